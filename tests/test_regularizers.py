"""Gradient penalties against finite differences and closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import regularizers


def _d_fn(w):
    # A small nonlinear "discriminator": logits = sum(tanh(x) * w) per image.
    return lambda x: jnp.sum(jnp.tanh(x) * w, axis=(1, 2, 3))


def _finite_difference_grad(f, x, eps=1e-2):
    """Central differences in float64 numpy through a float32 function (error ~eps^2)."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        g[idx] = (float(jnp.sum(f(up))) - float(jnp.sum(f(down)))) / (2 * eps)
    return g


def test_r1_equals_finite_difference_estimate():
    key = jax.random.key(0)
    w = jax.random.normal(key, (1, 3, 3, 2), jnp.float32)
    x = jax.random.normal(jax.random.key(1), (2, 3, 3, 2), jnp.float32)
    d_fn = _d_fn(w)
    g = _finite_difference_grad(d_fn, x)
    expected = np.mean(np.sum(g**2, axis=(1, 2, 3)))
    np.testing.assert_allclose(regularizers.r1_penalty(d_fn, x), expected, rtol=1e-3)


def test_gradient_penalty_equals_finite_difference_estimate():
    w = jax.random.normal(jax.random.key(2), (1, 3, 3, 2), jnp.float32)
    real = jax.random.normal(jax.random.key(3), (2, 3, 3, 2), jnp.float32)
    fake = jax.random.normal(jax.random.key(4), (2, 3, 3, 2), jnp.float32)
    rng = jax.random.key(5)
    eps = np.asarray(jax.random.uniform(rng, (2, 1, 1, 1)))
    x_hat = eps * np.asarray(real) + (1 - eps) * np.asarray(fake)
    g = _finite_difference_grad(_d_fn(w), x_hat)
    norms = np.sqrt(np.sum(g**2, axis=(1, 2, 3)))
    expected = np.mean((norms - 1) ** 2)
    got = regularizers.gradient_penalty(_d_fn(w), real, fake, rng)
    np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_penalty_of_a_linear_critic_with_unit_gradient_is_zero():
    w = jnp.full((1, 2, 2, 1), 0.5)  # ||w|| = 1 per image
    d_fn = lambda x: jnp.sum(x * w, axis=(1, 2, 3))  # noqa: E731
    x = jnp.ones((3, 2, 2, 1))
    np.testing.assert_allclose(
        regularizers.gradient_penalty(d_fn, x, -x, jax.random.key(0)), 0.0, atol=1e-6
    )
    np.testing.assert_allclose(regularizers.r1_penalty(d_fn, x), 1.0, rtol=1e-6)
