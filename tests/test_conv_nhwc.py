"""gan_jax.conv's NHWC kernels against `lax.conv_general_dilated` on small random inputs."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gan_jax import conv

HIGHEST = jax.lax.Precision.HIGHEST


def _reference(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(
        x, kernel, (strides, strides), padding, dimension_numbers=conv.NHWC, precision=HIGHEST
    )


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(
    ("size", "kernel", "strides", "padding"),
    [
        (9, (3, 3), 1, ((0, 0), (0, 0))),  # unpadded, stride 1: one extra row and column cut off
        (10, (3, 3), 1, ((0, 0), (0, 0))),
        (9, (3, 3), 2, ((0, 0), (0, 0))),  # stride 2, even size - kernel: the pad row is unread
        (10, (3, 3), 2, ((0, 0), (0, 0))),  # odd size - kernel: one extra output cut off
        (7, (3, 3), 1, ((1, 1), (1, 1))),
        (7, (5, 5), 1, ((2, 2), (2, 2))),
        (7, (1, 7), 1, ((0, 0), (3, 3))),  # padded along one axis only
        (7, (7, 1), 1, ((3, 3), (0, 0))),
        (5, (1, 3), 1, ((0, 0), (1, 1))),
        (5, (3, 1), 1, ((1, 1), (0, 0))),
        (8, (3, 3), 2, ((0, 1), (1, 0))),  # asymmetric padding is left as given
    ],
)
def test_conv_nhwc_equals_lax(size, kernel, strides, padding):
    x = _random((2, size, size + 1, 5), 0)
    k = _random((*kernel, 5, 6), 1)
    expected = _reference(x, k, strides, padding)
    for pad_unpadded in (True, False):
        f = jax.jit(conv.conv_nhwc, static_argnums=(2, 3, 4, 5))
        got = f(x, k, strides, padding, None, pad_unpadded)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_same_padding_keeps_the_size():
    x = _random((1, 6, 7, 3), 2)
    for kernel in [(1, 1), (3, 3), (1, 7), (7, 1), (5, 5)]:
        k = _random((*kernel, 3, 4), 3)
        assert conv.conv_nhwc(x, k, 1, conv.same_padding(kernel)).shape == (1, 6, 7, 4)


def test_pointwise_conv_equals_a_1x1_convolution():
    x = _random((2, 5, 4, 7), 4)
    k = _random((1, 1, 7, 3), 5)
    got = jax.jit(conv.pointwise_conv, static_argnums=2)(x, k, HIGHEST)
    expected = _reference(x, k, 1, ((0, 0), (0, 0)))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
