"""Spectral normalisation: power iteration against SVD, its state, one iteration per step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gan_jax
from gan_jax import models, spectral


def top_singular_value(w: np.ndarray) -> float:
    w = np.asarray(w, np.float64)
    return float(np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0])


def test_power_iteration_converges_to_the_largest_singular_value():
    w = jax.random.normal(jax.random.key(0), (4, 4, 8, 16))
    w_mat = w.reshape(-1, 16)
    u = spectral.l2_normalize(jax.random.normal(jax.random.key(1), (16,)))

    def body(_, carry):
        return spectral.power_iteration(w_mat, carry[0])

    init = (u, jnp.zeros(w_mat.shape[0]), jnp.zeros(()))
    u, v, sigma = jax.jit(lambda c: jax.lax.fori_loop(0, 500, body, c))(init)
    np.testing.assert_allclose(float(sigma), top_singular_value(w), rtol=1e-3)
    # u and v are the top singular vectors: W u = sigma v.
    np.testing.assert_allclose(w_mat @ u, sigma * v, atol=1e-3 * float(sigma))


def _sn_discriminator(conv_impl="dot"):
    d = models.Discriminator(
        image_size=16, channels=1, width=8, spectral_norm=True, conv_impl=conv_impl
    )
    x = jax.random.normal(jax.random.key(0), (4, 16, 16, 1))
    return d, x, d.init(jax.random.key(1), x, train=False)


@pytest.mark.parametrize("conv_impl", ["dot", "lax"])
def test_discriminator_weights_reach_spectral_norm_one(conv_impl):
    d, x, variables = _sn_discriminator(conv_impl)
    # Spectral norm replaces D's BatchNorm by biases; the vectors live in batch_stats.
    assert not any(name.startswith("bn") for name in variables["params"])
    assert set(variables["batch_stats"]) == {"down0", "down1", "logit"}
    assert "bias" in variables["params"]["down1"]

    def iterate(stats, _):
        _, updates = d.apply(
            {"params": variables["params"], "batch_stats": stats},
            x,
            update_sn=True,
            mutable=["batch_stats"],
        )
        return updates["batch_stats"], None

    stats = jax.jit(lambda s: jax.lax.scan(iterate, s, None, length=300)[0])(
        variables["batch_stats"]
    )
    for name, layer in stats.items():
        kernel = np.asarray(variables["params"][name]["kernel"])
        sigma = top_singular_value(kernel)
        np.testing.assert_allclose(float(layer["sn_sigma"]), sigma, rtol=1e-3, err_msg=name)
        normalised = kernel / float(layer["sn_sigma"])
        np.testing.assert_allclose(top_singular_value(normalised), 1.0, rtol=1e-3, err_msg=name)


def test_normalised_kernel_is_used_in_the_forward_pass():
    d, x, variables = _sn_discriminator()
    logits = d.apply(variables, x, train=False)
    # Scaling every weight leaves a spectrally normalised network unchanged
    # (the biases are zero at initialisation).
    scaled = jax.tree.map(lambda p: 3.0 * p, variables["params"])
    again = d.apply({**variables, "params": scaled}, x, train=False)
    np.testing.assert_allclose(again, logits, rtol=1e-5, atol=1e-6)


def test_eval_and_non_updating_passes_leave_the_vectors_alone():
    d, x, variables = _sn_discriminator()
    _, same = d.apply(variables, x, train=False, mutable=["batch_stats"])
    _, kept = d.apply(variables, x, update_sn=False, mutable=["batch_stats"])
    _, moved = d.apply(variables, x, mutable=["batch_stats"])  # train=True updates
    for updates, changed in [(same, False), (kept, False), (moved, True)]:
        differs = jax.tree.map(
            lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], updates["batch_stats"]
        )
        assert any(jax.tree.leaves(differs)) == changed


def test_train_step_runs_one_power_iteration(tiny_config):
    tiny_config.update(dict(spectral_norm=True, loss="hinge"))
    g, d = gan_jax.create_train_states(tiny_config, jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (8, 16, 16, 1), minval=-1, maxval=1)
    g1, d1, metrics = jax.jit(gan_jax.train_step)(g, d, images, jax.random.key(2))
    assert all(np.isfinite(float(m)) for m in metrics.values())
    for name, before in d.batch_stats.items():
        after = d1.batch_stats[name]
        # (The logit layer's weight is a vector: its estimate was exact from the start.)
        if name != "logit":
            assert not np.allclose(before["sn_u"], after["sn_u"]), name
        # Exactly one iteration, on the weights before the D update.
        w = d.params[name]["kernel"]
        u, v, sigma = spectral.power_iteration(w.reshape(-1, w.shape[-1]), before["sn_u"])
        np.testing.assert_allclose(after["sn_u"], u, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(after["sn_v"], v, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(after["sn_sigma"], sigma, rtol=1e-5)


def test_spectral_norm_is_part_of_the_checkpointed_architecture(tiny_config):
    from gan_jax import checkpoint

    saved = checkpoint.architecture(tiny_config)
    tiny_config.spectral_norm = True
    with pytest.raises(gan_jax.GanJaxError, match="spectral_norm: checkpoint False vs config True"):
        checkpoint.check_compatible({"architecture": saved}, tiny_config, "workdir")
