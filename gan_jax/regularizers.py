"""Discriminator gradient penalties.

Both take `d_fn`, a function from images to logits (the discriminator with its
parameters and statistics bound), and return a scalar to add to D's loss.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gan_jax.batch_rng import per_example

LogitFn = Callable[[jax.Array], jax.Array]


def _input_gradients(d_fn: LogitFn, x_NxHxWxC: jax.Array) -> jax.Array:
    # Summing over the batch gives each image's own gradient (the logits are per image).
    return jax.grad(lambda x: jnp.sum(d_fn(x)))(x_NxHxWxC)


def r1_penalty(d_fn: LogitFn, real_NxHxWxC: jax.Array) -> jax.Array:
    """E[||grad_x D(x)||^2] over real images (Mescheder et al. 2018); scale by gamma / 2."""
    g = _input_gradients(d_fn, real_NxHxWxC)
    return jnp.mean(jnp.sum(jnp.square(g), axis=(1, 2, 3)))


def gradient_penalty(
    d_fn: LogitFn,
    real_NxHxWxC: jax.Array,
    fake_NxHxWxC: jax.Array,
    rng: jax.Array,
    axis_name: str | None = None,
) -> jax.Array:
    """E[(||grad D(x_hat)|| - 1)^2] at random interpolates of real and fake (WGAN-GP).

    With `axis_name`, the interpolation weights are those of the global batch.
    """
    eps = per_example(
        lambda key, m: jax.random.uniform(key, (m, 1, 1, 1)), rng, real_NxHxWxC.shape[0], axis_name
    )
    x_hat = eps * real_NxHxWxC + (1.0 - eps) * fake_NxHxWxC
    g = _input_gradients(d_fn, x_hat)
    norms = jnp.sqrt(jnp.sum(jnp.square(g), axis=(1, 2, 3)) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))
