"""The SNGAN "standard CNN" (configs/cifar10_sngan.py): layers, shapes, a step, conv paths."""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gan_jax
from gan_jax import sngan

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "cifar10_sngan.py"


def sngan_config():
    spec = importlib.util.spec_from_file_location("cifar10_sngan", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def shapes(tree):
    return {
        "/".join(str(k.key) for k in path): x.shape for path, x in jax.tree.leaves_with_path(tree)
    }


def test_config_is_the_papers_setup():
    config = sngan_config()
    assert (config.arch, config.dataset, config.image_size, config.channels) == (
        "sngan_cnn",
        "cifar10",
        32,
        3,
    )
    assert config.spectral_norm and config.loss == "hinge" and not config.conditional
    assert (config.latent_dim, config.batch_size, config.n_dis) == (128, 64, 5)
    assert (config.g_learning_rate, config.d_learning_rate, config.b1, config.b2) == (
        2e-4,
        2e-4,
        0.5,
        0.999,
    )


def test_layers_are_table_3_of_the_paper():
    config = sngan_config()
    g, d = jax.eval_shape(lambda k: gan_jax.create_train_states(config, k), jax.random.key(0))
    assert isinstance(g.model, sngan.Generator) and isinstance(d.model, sngan.Discriminator)
    assert shapes(g.params) == {
        "project/kernel": (128, 4 * 4 * 512),
        "bn0/scale": (512,),
        "bn0/bias": (512,),
        "up1/conv/kernel": (4, 4, 512, 256),
        "bn1/scale": (256,),
        "bn1/bias": (256,),
        "up2/conv/kernel": (4, 4, 256, 128),
        "bn2/scale": (128,),
        "bn2/bias": (128,),
        "up3/conv/kernel": (4, 4, 128, 64),
        "bn3/scale": (64,),
        "bn3/bias": (64,),
        "out/kernel": (3, 3, 64, 3),
        "out/bias": (3,),
    }
    kernels = {
        "conv0": (3, 3, 3, 64),
        "down0": (4, 4, 64, 64),
        "conv1": (3, 3, 64, 128),
        "down1": (4, 4, 128, 128),
        "conv2": (3, 3, 128, 256),
        "down2": (4, 4, 256, 256),
        "conv3": (3, 3, 256, 512),
        "logit": (4, 4, 512, 1),  # The dense layer on the 4x4x512 features.
    }
    expected = {f"{k}/kernel": v for k, v in kernels.items()}
    expected.update({f"{k}/bias": (v[-1],) for k, v in kernels.items()})
    assert shapes(d.params) == expected
    # Spectral norm on every D weight: one power-iteration state per layer, no BatchNorm.
    assert sorted(d.batch_stats) == sorted(kernels)
    assert shapes(d.batch_stats)["conv3/sn_u"] == (512,)


@pytest.mark.parametrize(
    "width",
    [
        # Compiling the paper's widths takes about a minute; the layers are checked above.
        pytest.param(64, id="full_size", marks=pytest.mark.slow),
        pytest.param(8, id="narrow"),
    ],
)
def test_models_and_one_train_step(width):
    config = sngan_config()
    config.g_width = config.d_width = width
    g, d = gan_jax.create_train_states(config, jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (4, 128))
    images = jax.jit(gan_jax.generate_from_latent)(g, z)
    assert images.shape == (4, 32, 32, 3) and float(jnp.max(jnp.abs(images))) <= 1.0
    logits = jax.jit(lambda v, x: d.model.apply(v, x, train=False))(d.variables(), images)
    assert logits.shape == (4,)
    real = jax.random.uniform(jax.random.key(2), (4, 32, 32, 3), minval=-1, maxval=1)
    g1, d1, metrics = jax.jit(gan_jax.train_step)(g, d, real, jax.random.key(3))
    assert all(np.isfinite(float(m)) for m in metrics.values()), metrics
    assert int(d1.step) == 1 and int(g1.step) == 0  # n_dis = 5: G moves on D steps 5, 10, ...
    assert not np.allclose(d1.batch_stats["conv0"]["sn_u"], d.batch_stats["conv0"]["sn_u"])


@pytest.mark.parametrize("conditional", [False, True])
def test_dot_and_lax_paths_compute_the_same_functions(conditional):
    kw = dict(image_size=16, channels=3, width=8, num_classes=4 if conditional else 0)
    z = jax.random.normal(jax.random.key(0), (4, 16))
    labels = {"labels": jnp.array([0, 3, 1, 2])} if conditional else {}
    results = {}
    for impl in ("dot", "lax"):
        g = sngan.Generator(conv_impl=impl, **kw)
        d = sngan.Discriminator(conv_impl=impl, spectral_norm=True, **kw)
        # Jitted: one compilation per function instead of one per operation.
        g_vars = jax.jit(lambda k, g=g: g.init(k, z, train=False, **labels))(jax.random.key(1))
        x, g_updates = jax.jit(lambda v, g=g: g.apply(v, z, mutable=["batch_stats"], **labels))(
            g_vars
        )
        d_vars = jax.jit(lambda k, x, d=d: d.init(k, x, train=False, **labels))(
            jax.random.key(2), x
        )

        def d_loss(params, d=d, d_vars=d_vars, x=x):
            logits, updates = d.apply(
                {**d_vars, "params": params}, x, mutable=["batch_stats"], **labels
            )
            return jnp.sum(logits**2), updates

        value_and_grad = jax.jit(jax.value_and_grad(d_loss, has_aux=True))
        (loss, d_updates), grads = value_and_grad(d_vars["params"])
        results[impl] = (g_vars, x, g_updates, d_vars, loss, d_updates, grads)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5),
        results["dot"],
        results["lax"],
    )


def test_unknown_architecture_is_a_clear_error(tiny_config):
    tiny_config.arch = "resnet"
    with pytest.raises(ValueError, match=r"unknown arch 'resnet'.*--config.arch=dcgan"):
        gan_jax.create_train_states(tiny_config, jax.random.key(0))
