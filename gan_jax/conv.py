"""Convolution kernels shared by the networks.

NHWC activations with (kh, kw, in, out) kernels: XLA convolutions arranged the way
XLA:CPU runs fastest, and 1x1 convolutions as plain matrix products. Both compute what
`jax.lax.conv_general_dilated` computes, to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Padding = tuple[tuple[int, int], tuple[int, int]]
NHWC = ("NHWC", "HWIO", "NHWC")


def same_padding(kernel: tuple[int, int]) -> Padding:
    """Symmetric padding that keeps an odd kernel's stride-1 output the input's size."""
    return ((kernel[0] // 2, kernel[0] // 2), (kernel[1] // 2, kernel[1] // 2))


def conv_nhwc(
    x_NxHxWxC: jax.Array,
    kernel: jax.Array,
    strides: int = 1,
    padding: Padding = ((0, 0), (0, 0)),
    precision: Any = None,
    pad_unpadded: bool = True,
) -> jax.Array:
    """`lax.conv_general_dilated` on NHWC, with unpadded spatial axes padded by one.

    XLA:CPU's YNNPACK kernels (its default for convolutions in jax 0.10) run a
    convolution with no padding on an axis 1.2-5x slower than the same one with some
    padding. So an unpadded axis gets one zero row (column) at its end: with stride 2
    and an even `size - kernel` no window reaches it; otherwise the one extra output
    row is cut off. `pad_unpadded=False` leaves the padding as given (for XLA:CPU's
    Eigen kernels, which have no such slow path).
    """
    kh, kw = kernel.shape[:2]
    _, h, w, _ = x_NxHxWxC.shape
    out_h = (h + sum(padding[0]) - kh) // strides + 1
    out_w = (w + sum(padding[1]) - kw) // strides + 1
    fixed = padding
    if pad_unpadded:
        fixed = tuple((lo, hi + 1) if (lo, hi) == (0, 0) else (lo, hi) for lo, hi in padding)
    y = jax.lax.conv_general_dilated(
        x_NxHxWxC,
        kernel,
        (strides, strides),
        fixed,
        dimension_numbers=NHWC,
        precision=precision,
    )
    if y.shape[1:3] != (out_h, out_w):
        y = y[:, :out_h, :out_w]
    return y


def pointwise_conv(x_NxHxWxC: jax.Array, kernel: jax.Array, precision: Any = None) -> jax.Array:
    """A 1x1 convolution, (1, 1, C, O) kernel, as one (N H W, C) x (C, O) product."""
    n, h, w, c = x_NxHxWxC.shape
    out = kernel.shape[-1]
    y = jnp.dot(x_NxHxWxC.reshape(n * h * w, c), kernel.reshape(c, out), precision=precision)
    return y.reshape(n, h, w, out)
