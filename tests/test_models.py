"""Model shapes, parameter counts and initialisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gan_jax
from gan_jax import layers, models


def test_parameter_counts_equal_pytorch_dcgan():
    g_state, d_state = gan_jax.create_train_states(gan_jax.default_config(), jax.random.key(0))
    # Counts of the PyTorch DCGAN (32x32x3, latent 100, width 64): G 1,068,928, D 663,296.
    assert gan_jax.count_params(g_state.params) == 1_068_928
    assert gan_jax.count_params(d_state.params) == 663_296


@pytest.mark.parametrize("size,channels", [(16, 1), (32, 3), (64, 3), (64, 1)])
def test_shapes_and_ranges(size, channels):
    g = models.Generator(image_size=size, channels=channels, width=8)
    d = models.Discriminator(image_size=size, channels=channels, width=8)
    z = jax.random.normal(jax.random.key(0), (3, 100))
    # Jitted: one compilation per function instead of one per operation.
    g_vars = jax.jit(lambda k: g.init(k, z, train=False))(jax.random.key(1))
    x = jax.jit(lambda v: g.apply(v, z, train=False))(g_vars)
    assert x.shape == (3, size, size, channels)
    assert float(jnp.max(jnp.abs(x))) <= 1.0
    d_vars = jax.jit(lambda k: d.init(k, x, train=False))(jax.random.key(2))
    assert jax.jit(lambda v: d.apply(v, x, train=False))(d_vars).shape == (3,)


def test_64x64_adds_one_stage():
    g = models.Generator(image_size=64)
    z = jnp.zeros((1, 100))
    params = jax.eval_shape(lambda: g.init(jax.random.key(0), z, train=False))["params"]
    # pytorch/examples: 100 -> 512 (4x4) -> 256 -> 128 -> 64 -> 3.
    assert params["project"]["kernel"].shape == (4, 4, 100, 512)
    assert params["up4"]["conv"]["kernel"].shape == (4, 4, 64, 3)


def test_dcgan_initialisation_and_batchnorm_settings():
    g_state, d_state = gan_jax.create_train_states(gan_jax.default_config(), jax.random.key(0))
    w = np.asarray(d_state.params["down1"]["kernel"])
    assert abs(w.mean()) < 2e-3 and abs(w.std() - 0.02) < 1e-3
    scale = np.asarray(g_state.params["bn0"]["scale"])
    assert abs(scale.mean() - 1.0) < 5e-3 and abs(scale.std() - 0.02) < 5e-3
    assert np.all(np.asarray(g_state.params["bn0"]["bias"]) == 0)
    assert "bias" not in d_state.params["down0"]  # no conv biases, as in DCGAN
    assert layers.BN_MOMENTUM == 0.9 and layers.BN_EPSILON == 1e-5


def test_batchnorm_running_average_uses_pytorch_momentum():
    bn = layers.batch_norm(None, jnp.float32, "bn")
    x = jax.random.normal(jax.random.key(0), (64, 2, 2, 4)) * 3.0 + 5.0
    variables = bn.init(jax.random.key(1), x, use_running_average=False)
    _, updates = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    mean = np.asarray(x).mean(axis=(0, 1, 2))
    # PyTorch: running = 0.9 * running + 0.1 * batch, from running_mean = 0.
    np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5)


def test_discriminator_returns_logits_not_probabilities():
    d = models.Discriminator(width=8)
    x = jax.random.normal(jax.random.key(0), (16, 32, 32, 3)) * 50
    variables = jax.jit(lambda k: d.init(k, x, train=False))(jax.random.key(1))
    variables = jax.tree.map(lambda p: p * 30, variables)
    logits = jax.jit(lambda v: d.apply(v, x, train=False))(variables)
    assert float(jnp.max(jnp.abs(logits))) > 1.0


def test_unsupported_image_size_is_a_clear_error():
    with pytest.raises(ValueError, match="image_size=48 is not supported"):
        layers.num_stages(48)
