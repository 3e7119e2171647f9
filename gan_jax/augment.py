"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for data-efficient GANs.

The same random colour, translation and cutout transforms are applied to real
and generated images before the discriminator sees them, in both players'
losses. Every transform is differentiable in the images, so the generator's
gradient flows through them. With `axis_name` (data-parallel training) the random
draws are those of the global batch (`gan_jax.batch_rng`), so an image is
augmented the same way whatever the number of devices.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gan_jax.batch_rng import per_example

Augment = Callable[..., jax.Array]  # (images, rng, axis_name=None) -> images


def _per_image(rng: jax.Array, n: int, low: float, high: float, axis_name: str | None) -> jax.Array:
    def sample(key, m):
        return jax.random.uniform(key, (m, 1, 1, 1), minval=low, maxval=high)

    return per_example(sample, rng, n, axis_name)


def _randint(rng: jax.Array, shape: tuple[int, ...], low: int, high: int, axis_name: str | None):
    def sample(key, m):
        return jax.random.randint(key, (m, *shape[1:]), low, high)

    return per_example(sample, rng, shape[0], axis_name)


def color(x_NxHxWxC: jax.Array, rng: jax.Array, axis_name: str | None = None) -> jax.Array:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5) per image."""
    n = x_NxHxWxC.shape[0]
    k1, k2, k3 = jax.random.split(rng, 3)
    x = x_NxHxWxC + _per_image(k1, n, -0.5, 0.5, axis_name)
    mean_c = jnp.mean(x, axis=-1, keepdims=True)
    x = (x - mean_c) * _per_image(k2, n, 0.0, 2.0, axis_name) + mean_c
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean) * _per_image(k3, n, 0.5, 1.5, axis_name) + mean


def translation(
    x_NxHxWxC: jax.Array, rng: jax.Array, axis_name: str | None = None, ratio: float = 0.125
) -> jax.Array:
    """Shifts each image by up to `ratio` of its size in each axis, filling with zeros."""
    n, h, w, _ = x_NxHxWxC.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ky, kx = jax.random.split(rng)
    dy = _randint(ky, (n,), -sh, sh + 1, axis_name)
    dx = _randint(kx, (n,), -sw, sw + 1, axis_name)
    padded = jnp.pad(x_NxHxWxC, ((0, 0), (sh, sh), (sw, sw), (0, 0)))

    def shift(img, oy, ox):
        return jax.lax.dynamic_slice(img, (sh - oy, sw - ox, 0), (h, w, img.shape[-1]))

    return jax.vmap(shift)(padded, dy, dx)


def cutout(
    x_NxHxWxC: jax.Array, rng: jax.Array, axis_name: str | None = None, ratio: float = 0.5
) -> jax.Array:
    """Zeroes one random square of side `ratio` * size per image (it may cross the border)."""
    n, h, w, _ = x_NxHxWxC.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ky, kx = jax.random.split(rng)
    cy = _randint(ky, (n, 1, 1), 0, h + (1 - ch % 2), axis_name)
    cx = _randint(kx, (n, 1, 1), 0, w + (1 - cw % 2), axis_name)
    rows = jnp.arange(h)[None, :, None]
    cols = jnp.arange(w)[None, None, :]
    top, left = cy - ch // 2, cx - cw // 2
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x_NxHxWxC * (~inside)[..., None].astype(x_NxHxWxC.dtype)


TRANSFORMS: dict[str, Augment] = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(
    x_NxHxWxC: jax.Array, rng: jax.Array, policy: str, axis_name: str | None = None
) -> jax.Array:
    """Applies the comma-separated transforms of `policy` (e.g. "color,translation,cutout").

    `axis_name`: the device axis in data-parallel training (see the module doc).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.ones((2, 8, 8, 3))
      >>> diff_augment(x, jax.random.key(0), "translation,cutout").shape
      (2, 8, 8, 3)
    """
    names = [p for p in policy.split(",") if p]
    unknown = [p for p in names if p not in TRANSFORMS]
    if unknown:
        raise ValueError(
            f"unknown augmentation {unknown[0]!r}; use a comma-separated subset of "
            f"{sorted(TRANSFORMS)} (--config.diff_augment=color,translation,cutout)."
        )
    for name, key in zip(names, jax.random.split(rng, max(len(names), 1)), strict=False):
        x_NxHxWxC = TRANSFORMS[name](x_NxHxWxC, key, axis_name)
    return x_NxHxWxC
