"""DiffAugment: shapes, what each transform does, and that gradients flow through it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import augment


def _images(n=4, size=8, c=3):
    return jax.random.uniform(jax.random.key(0), (n, size, size, c), minval=-1, maxval=1)


def test_translation_shifts_content_and_fills_zeros():
    x = _images()
    y = augment.translation(x, jax.random.key(1))
    for i in range(x.shape[0]):
        # Each output is the input shifted by some (dy, dx) within +-1 pixel (8 * 0.125).
        matches = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                shifted = np.roll(np.asarray(x[i]), (dy, dx), axis=(0, 1))
                if dy == 1:
                    shifted[0] = 0
                if dy == -1:
                    shifted[-1] = 0
                if dx == 1:
                    shifted[:, 0] = 0
                if dx == -1:
                    shifted[:, -1] = 0
                matches.append(np.allclose(shifted, y[i]))
        assert any(matches)


def test_cutout_zeroes_one_square_of_half_size_inside_the_image():
    x = jnp.ones((16, 8, 8, 1))
    y = np.asarray(augment.cutout(x, jax.random.key(2)))
    zeros = (y[..., 0] == 0).sum(axis=(1, 2))
    assert zeros.max() == 16 and zeros.min() >= 4  # a 4x4 square, possibly clipped
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_color_changes_values_but_not_structure():
    x = _images()
    y = augment.color(x, jax.random.key(3))
    assert y.shape == x.shape and not np.allclose(x, y)


def test_gradients_flow_through_every_transform():
    x = _images()
    g = jax.grad(
        lambda x: jnp.sum(
            augment.diff_augment(x, jax.random.key(4), "color,translation,cutout") ** 2
        )
    )(x)
    assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).sum()) > 0


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        augment.diff_augment(_images(), jax.random.key(0), "color,flip")
