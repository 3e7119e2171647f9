"""One training step equals the PyTorch DCGAN's (pytorch/examples loop) from the same weights.

This pins the architecture (layers, padding, kernel orientation, BatchNorm) and the
loss maths to the reference implementation. torch is an optional dependency.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gan_jax

torch = pytest.importorskip("torch")
nn = torch.nn


def _torch_models(nz=100, ngf=64, ndf=64, nc=3):
    g = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.ReLU(),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    d = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False),
    )
    return g, d


def _t(x):
    return torch.from_numpy(np.array(x, np.float32))


def _load(g_t, d_t, g_params, d_params):
    """Copies Flax parameters into the PyTorch modules."""
    with torch.no_grad():
        # Flax ConvTranspose correlates the dilated input with an unflipped kernel
        # (kh, kw, in, out); PyTorch's (in, out, kh, kw) kernel is applied flipped.
        g_convs = [g_params["project"]["kernel"]] + [
            g_params[f"up{i}"]["conv"]["kernel"] for i in (1, 2, 3)
        ]
        for layer, k in zip([g_t[0], g_t[3], g_t[6], g_t[9]], g_convs, strict=True):
            layer.weight.copy_(_t(np.asarray(k)[::-1, ::-1].transpose(2, 3, 0, 1)))
        for layer, name in zip([g_t[1], g_t[4], g_t[7]], ["bn0", "bn1", "bn2"], strict=True):
            layer.weight.copy_(_t(g_params[name]["scale"]))
            layer.bias.copy_(_t(g_params[name]["bias"]))
        d_convs = [d_params[n]["kernel"] for n in ("down0", "down1", "down2", "logit")]
        for layer, k in zip([d_t[0], d_t[2], d_t[5], d_t[8]], d_convs, strict=True):
            layer.weight.copy_(_t(np.asarray(k).transpose(3, 2, 0, 1)))
        for layer, name in zip([d_t[3], d_t[6]], ["bn1", "bn2"], strict=True):
            layer.weight.copy_(_t(d_params[name]["scale"]))
            layer.bias.copy_(_t(d_params[name]["bias"]))


def _torch_step(g_t, d_t, real_nchw, z):
    """The pytorch/examples DCGAN step, with BCE on logits."""
    bce = nn.BCEWithLogitsLoss()
    opt_d = torch.optim.Adam(d_t.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(g_t.parameters(), lr=2e-4, betas=(0.5, 0.999))
    n = real_nchw.shape[0]
    ones, zeros = torch.ones(n), torch.zeros(n)
    d_t.zero_grad()
    err_real = bce(d_t(real_nchw).view(-1), ones)
    fake = g_t(z)
    err_fake = bce(d_t(fake.detach()).view(-1), zeros)
    (err_real + err_fake).backward()
    opt_d.step()
    g_t.zero_grad()
    err_g = bce(d_t(fake).view(-1), ones)
    err_g.backward()
    opt_g.step()
    return float((err_real + err_fake).detach()), float(err_g.detach())


def test_one_step_matches_pytorch_dcgan():
    torch.manual_seed(0)
    config = gan_jax.default_config()
    g_state, d_state = gan_jax.create_train_states(config, jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (8, 32, 32, 3), minval=-1, maxval=1)
    rng = jax.random.key(2)
    g_t, d_t = _torch_models()
    g_t.train(), d_t.train()
    _load(g_t, d_t, g_state.params, d_state.params)

    z = gan_jax.sample_latent(rng, 8, config.latent_dim)
    d_loss_t, g_loss_t = _torch_step(
        g_t, d_t, _t(np.asarray(images).transpose(0, 3, 1, 2)), _t(z)[:, :, None, None]
    )
    g_new, d_new, metrics = jax.jit(gan_jax.train_step)(g_state, d_state, images, rng)

    np.testing.assert_allclose(metrics["d_loss"], d_loss_t, rtol=1e-5)
    np.testing.assert_allclose(metrics["g_loss"], g_loss_t, rtol=1e-5)
    # Parameters after one Adam step. Adam's first step is lr * g / (|g| + eps): every
    # weight moves by ~lr = 2e-4, except where |g| is near eps = 1e-8, where float
    # rounding of g decides the step. So: nearly all weights agree to 1% of lr, and
    # none is off by more than two steps.
    g_ref, d_ref = _torch_models()
    _load(g_ref, d_ref, g_new.params, d_new.params)
    for ours, ref in [(g_ref, g_t), (d_ref, d_t)]:
        for (name, p_ours), p_ref in zip(ours.named_parameters(), ref.parameters(), strict=True):
            diff = np.abs(p_ours.detach().numpy() - p_ref.detach().numpy())
            assert np.mean(diff > 2e-6) < 1e-4, name
            assert diff.max() <= 4e-4, name
    # BatchNorm running means follow PyTorch's momentum (0.1); running variances differ
    # only by PyTorch's unbiased n/(n-1) correction of the batch variance.
    np.testing.assert_allclose(
        g_new.batch_stats["bn0"]["mean"], g_t[1].running_mean.numpy(), rtol=1e-4, atol=1e-6
    )
    assert jnp.all(jnp.isfinite(g_new.batch_stats["bn0"]["var"]))
