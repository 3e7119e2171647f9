"""DCGAN generator and discriminator as Flax linen modules (NHWC).

At the default sizes (latent 100, width 64, 32x32x3) these reproduce the classic
DCGAN exactly: the same layers, the same parameter counts, no biases, BatchNorm
with PyTorch's momentum (0.1) and epsilon (1e-5), and DCGAN initialisation.
Every larger power-of-two image size adds one stage, as in pytorch/examples.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's BatchNorm momentum 0.1 is Flax's 0.9 (Flax weights the old value).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
SUPPORTED_IMAGE_SIZES = (16, 32, 64, 128, 256)

conv_init = nn.initializers.normal(stddev=0.02)


def bn_scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """DCGAN BatchNorm scale initialisation: N(1, 0.02)."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def num_stages(image_size: int) -> int:
    """Number of stride-2 stages between 4x4 and `image_size` (3 for 32x32)."""
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(
            f"image_size={image_size} is not supported by the DCGAN architecture; "
            f"use one of {SUPPORTED_IMAGE_SIZES} (--config.image_size=32)."
        )
    return int(math.log2(image_size)) - 2


def _batch_norm(axis_name: str | None, dtype: Any, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        axis_name=axis_name,
        scale_init=bn_scale_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


class Generator(nn.Module):
    """Maps latent vectors (N, latent_dim) to images (N, S, S, channels) in [-1, 1].

    Attributes:
      image_size: output side; a power of two from 16 to 256.
      channels: output channels (1 grayscale, 3 RGB).
      width: channels of the last hidden stage; earlier stages double it.
      dtype: computation dtype (float32, or bfloat16 for mixed precision);
        parameters and BatchNorm statistics stay float32.
      axis_name: the mapped axis for cross-replica BatchNorm under pmap/shard_map.
      subpixel: compute each stride-2 transposed convolution as one 3x3
        convolution followed by depth-to-space (the same function, often faster).
    """

    image_size: int = 32
    channels: int = 3
    width: int = 64
    dtype: Any = jnp.float32
    axis_name: str | None = None
    subpixel: bool = False

    @nn.compact
    def __call__(self, z_NxL: jax.Array, train: bool = True) -> jax.Array:
        n = num_stages(self.image_size)
        widths = [self.width * 2 ** (n - 1 - i) for i in range(n)]
        x = z_NxL.astype(self.dtype)[:, None, None, :]
        # Project 1x1 -> 4x4 (a 4x4 "valid" transposed convolution).
        x = nn.ConvTranspose(
            widths[0], (4, 4), padding="VALID", use_bias=False, kernel_init=conv_init,
            dtype=self.dtype, name="project",
        )(x)
        x = _batch_norm(self.axis_name, self.dtype, "bn0")(x, use_running_average=not train)
        x = nn.relu(x)
        for i, features in enumerate(widths[1:] + [self.channels]):
            x = upsample_conv(features, self.subpixel, self.dtype, name=f"up{i + 1}")(x)
            if i + 1 < n:
                x = _batch_norm(self.axis_name, self.dtype, f"bn{i + 1}")(
                    x, use_running_average=not train
                )
                x = nn.relu(x)
        return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
    """Maps images (N, S, S, C) to real/fake logits (N,); no sigmoid inside.

    Attributes are as in `Generator`; `width` is the first stage's channels.
    """

    image_size: int = 32
    channels: int = 3
    width: int = 64
    dtype: Any = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x_NxSxSxC: jax.Array, train: bool = True) -> jax.Array:
        n = num_stages(self.image_size)
        x = x_NxSxSxC.astype(self.dtype)
        for i in range(n):
            x = nn.Conv(
                self.width * 2**i, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                use_bias=False, kernel_init=conv_init, dtype=self.dtype, name=f"down{i}",
            )(x)
            if i > 0:
                x = _batch_norm(self.axis_name, self.dtype, f"bn{i}")(
                    x, use_running_average=not train
                )
            x = nn.leaky_relu(x, 0.2)
        x = nn.Conv(
            1, (4, 4), padding="VALID", use_bias=False, kernel_init=conv_init,
            dtype=self.dtype, name="logit",
        )(x)
        return x.reshape(x.shape[0]).astype(jnp.float32)


class UpsampleConvTranspose(nn.Module):
    """A 4x4 stride-2 transposed convolution with PyTorch's padding=1 (doubles H and W)."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # PyTorch padding p corresponds to lax padding k - 1 - p = 2 on each side.
        return nn.ConvTranspose(
            self.features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
            use_bias=False, kernel_init=conv_init, dtype=self.dtype, name="conv",
        )(x)


class UpsampleSubpixel(nn.Module):
    """The same function as `UpsampleConvTranspose`, as a convolution and depth-to-space.

    Output pixel (2i + a, 2j + b) of the transposed convolution only sees input
    pixels i-1..i+1 (rows) and j-1..j+1 (columns) through the kernel taps of parity
    (a, b). One 3x3 convolution with 4x the output channels computes all four
    parities at once; depth-to-space interleaves them. The parameter is stored in
    the transposed convolution's (4, 4, in, out) layout, so checkpoints of either
    module load in the other.
    """

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        kernel = self.param(
            "conv", lambda k: {"kernel": conv_init(k, (4, 4, in_features, self.features))}
        )["kernel"]
        w = subpixel_kernel(kernel).astype(self.dtype)
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), w, (1, 1), ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        n, h, wd, _ = y.shape
        y = y.reshape(n, h, wd, 2, 2, self.features)
        return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * wd, self.features)


def subpixel_kernel(kernel_4x4xIxO: jax.Array) -> jax.Array:
    """Rearranges a (4, 4, I, O) transposed-conv kernel into a (3, 3, I, 4*O) conv kernel.

    Output channel block `2*a + b` of the result holds output parity (a, b).
    """
    kh = kernel_4x4xIxO.shape[0]
    zeros = jnp.zeros_like(kernel_4x4xIxO[0, 0])
    rows = []
    for dy in (-1, 0, 1):
        cols = []
        for dx in (-1, 0, 1):
            taps = []
            for a in (0, 1):
                for b in (0, 1):
                    ky, kx = _tap(dy, a), _tap(dx, b)
                    ok = 0 <= ky < kh and 0 <= kx < kh
                    taps.append(kernel_4x4xIxO[ky, kx] if ok else zeros)
            cols.append(jnp.concatenate(taps, axis=-1))
        rows.append(jnp.stack(cols))
    return jnp.stack(rows)


def _tap(d: int, parity: int) -> int:
    """Kernel index that links output 2*i + parity to input i + d.

    `lax.conv_transpose` with padding 2 places input i at position 2*i + 2 of the
    dilated input and output o reads positions o..o+3, so k = 2*d + 2 - parity.
    """
    return 2 * d + 2 - parity


def upsample_conv(features: int, subpixel: bool, dtype: Any, name: str) -> nn.Module:
    """The generator's stride-2 upsampling layer, in either formulation."""
    if subpixel:
        return UpsampleSubpixel(features, dtype=dtype, name=name)
    return UpsampleConvTranspose(features, dtype=dtype, name=name)
