"""Flax layers shared by the DCGAN (`gan_jax.models`) and SNGAN (`gan_jax.sngan`) networks.

The convolution layers own their parameters under the names flax's `Conv` and
`ConvTranspose` give them and run either formulation of `gan_jax.conv`: with
`channels_major` they take and return (C, H, W, N) activations and use the
matrix-product kernels, else NHWC activations and XLA convolutions. A network
picks the layout once (`gan_jax.networks` does so from `conv_impl`) and hands
`channels_major` to its layers; the parameters are the same in both layouts.

Every default follows DCGAN: N(0, 0.02) weights, no biases, BatchNorm with
PyTorch's momentum (0.1) and epsilon (1e-5) and scale initialised N(1, 0.02).
Class-conditional networks use `ConditionalBatchNorm` (generator) and the
projection term of `logit_layer` (discriminator); `spectral_norm` divides a
weight by its largest singular value (`gan_jax.spectral`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax import spectral
from gan_jax.conv import (
    add_bias,
    channel_axis,
    conv3x3_dot,
    conv_dot,
    conv_lax,
    conv_transpose_dot,
    conv_transpose_lax,
    conv_transpose_subpixel,
    dense_dot,
    logit_dot,
    project_dot,
)

# PyTorch's BatchNorm momentum 0.1 is Flax's 0.9 (Flax weights the old value).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
SUPPORTED_IMAGE_SIZES = (16, 32, 64, 128, 256)

conv_init = nn.initializers.normal(stddev=0.02)


def bn_scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """DCGAN BatchNorm scale initialisation: N(1, 0.02)."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def num_stages(image_size: int) -> int:
    """Number of stride-2 stages between 4x4 and `image_size` (3 for 32x32).

    The one check of the image size: raises ValueError for unsupported sizes.
    """
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(
            f"image_size={image_size} is not supported by the DCGAN architecture; "
            f"use one of {SUPPORTED_IMAGE_SIZES} (--config.image_size=32)."
        )
    return int(math.log2(image_size)) - 2


def check_labels(num_classes: int, labels: jax.Array | None, network: str) -> None:
    """Raises ValueError unless labels are given exactly when the network is conditional."""
    if num_classes and labels is None:
        raise ValueError(
            f"the {network} is class-conditional (num_classes={num_classes}): pass labels=..."
        )
    if not num_classes and labels is not None:
        raise ValueError(
            f"the {network} is unconditional: labels need a conditional model "
            "(config.conditional=True)."
        )


# ---------------------------------------------------------------- normalisation


def batch_norm(axis_name: str | None, dtype: Any, name: str, axis: int = -1) -> nn.BatchNorm:
    """DCGAN's BatchNorm (PyTorch momentum and epsilon; float32 parameters and statistics)."""
    return nn.BatchNorm(
        axis=axis,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        axis_name=axis_name,
        scale_init=bn_scale_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (categorical conditional BN).

    The statistics are those of `batch_norm` (submodule `norm`); the parameters
    `scale` and `bias` are (num_classes, C) tables, initialised as DCGAN's BatchNorm.
    `axis` is the channel axis: -1 for NHWC, 0 for channels-major (C, H, W, N).
    """

    num_classes: int
    axis: int = -1
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, use_running_average: bool) -> jax.Array:
        x = nn.BatchNorm(
            axis=self.axis,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            axis_name=self.axis_name,
            use_scale=False,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name="norm",
        )(x, use_running_average=use_running_average)
        c = x.shape[self.axis]
        scale = self.param("scale", bn_scale_init, (self.num_classes, c), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.num_classes, c), jnp.float32)
        scale_NxC, bias_NxC = scale[labels].astype(x.dtype), bias[labels].astype(x.dtype)
        if self.axis == 0:  # (C, H, W, N)
            return x * scale_NxC.T[:, None, None, :] + bias_NxC.T[:, None, None, :]
        return x * scale_NxC[:, None, None, :] + bias_NxC[:, None, None, :]


def norm_layers(
    num_classes: int,
    axis_name: str | None,
    dtype: Any,
    channels_major: bool,
    labels: jax.Array | None,
    train: bool,
) -> Callable[[str, jax.Array], jax.Array]:
    """A network's BatchNorm layers, as `bn(name, x)`: conditional when it has classes.

    Batch statistics with `train`, else the running ones. Call `bn` from a
    compact method: the layer, named `name`, belongs to the caller.
    """
    axis = channel_axis(channels_major)

    def bn(name: str, x: jax.Array) -> jax.Array:
        if num_classes:
            layer = ConditionalBatchNorm(num_classes, axis, axis_name, dtype, name=name)
            return layer(x, labels, use_running_average=not train)
        return batch_norm(axis_name, dtype, name, axis=axis)(x, use_running_average=not train)

    return bn


# ---------------------------------------------------------------- weights


def _kernel_and_bias(
    module: nn.Module, shape: tuple[int, ...], use_bias: bool, sn: bool, update_sn: bool
) -> tuple[jax.Array, jax.Array | None]:
    """`kernel` (spectrally normalised with `sn`) and `bias` or None, params of `module`."""
    kernel = module.param("kernel", conv_init, shape, jnp.float32)
    if sn:
        kernel = spectral.normalize(module, kernel, update_sn)
    bias = None
    if use_bias:
        bias = module.param("bias", nn.initializers.zeros, (shape[-1],), jnp.float32)
    return kernel, bias


class Weight(nn.Module):
    """A convolution kernel (and bias) for hand-written layers, optionally spectrally normalised.

    Parameters `kernel` (initialised like flax's Conv kernel in DCGAN) and, with
    `use_bias`, `bias` (zeros), named as in flax's `Conv`. With `spectral_norm` the
    kernel comes back divided by its largest singular value (`gan_jax.spectral`;
    `update_sn` runs the power iteration). Returns `(kernel, bias or None)`.
    """

    shape: tuple[int, ...]
    use_bias: bool = False
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, update_sn: bool = False) -> tuple[jax.Array, jax.Array | None]:
        return _kernel_and_bias(self, self.shape, self.use_bias, self.spectral_norm, update_sn)


class Kernel(nn.Module):
    """A bare convolution kernel, named and initialised like flax's Conv/ConvTranspose kernel."""

    shape: tuple[int, ...]

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("kernel", conv_init, self.shape, jnp.float32)


class Projection(nn.Module):
    """The class embeddings of a projection discriminator (Miyato & Koyama 2018).

    Parameter `embedding` (num_classes, H*W*C), spectrally normalised on request.
    Returns the rows of `labels` shaped (N, H, W, C) = (N, *feature_shape), float32:
    the discriminator adds their inner product with its last features to the logit.
    """

    num_classes: int
    spectral_norm: bool = False

    @nn.compact
    def __call__(
        self, labels: jax.Array, feature_shape: tuple[int, ...], update_sn: bool = False
    ) -> jax.Array:
        dim = math.prod(feature_shape)
        table = self.param("embedding", conv_init, (self.num_classes, dim), jnp.float32)
        if self.spectral_norm:
            table = spectral.normalize(self, table, update_sn)
        return table[labels].reshape(labels.shape[0], *feature_shape)


# ---------------------------------------------------------------- convolutions

# Kernel size -> stride of the convolutions with padding 1 that both layouts implement.
_CONV_STRIDES = {3: 1, 4: 2}


class Conv(nn.Module):
    """A 3x3 stride-1 or 4x4 stride-2 convolution with padding 1, in either layout.

    Parameters as `Weight`'s: `kernel` (size, size, in, features), `bias` with
    `use_bias`; `spectral_norm` normalises the kernel (`update_sn` runs the
    power iteration).
    """

    features: int
    size: int
    use_bias: bool = False
    spectral_norm: bool = False
    dtype: Any = jnp.float32
    channels_major: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, update_sn: bool = False) -> jax.Array:
        if self.size not in _CONV_STRIDES:
            raise ValueError(f"Conv size={self.size} is not supported; use 3 or 4.")
        shape = (self.size, self.size, x.shape[channel_axis(self.channels_major)], self.features)
        kernel, bias = _kernel_and_bias(self, shape, self.use_bias, self.spectral_norm, update_sn)
        kernel = kernel.astype(self.dtype)
        if not self.channels_major:
            y = conv_lax(x, kernel, _CONV_STRIDES[self.size], 1)
        elif self.size == 3:
            y = conv3x3_dot(x, kernel)
        else:
            y = conv_dot(x, kernel)
        return add_bias(y, bias, self.channels_major)


class ProjectConvTranspose(nn.Module):
    """The DCGAN generator's first layer: a 4x4 "valid" transposed convolution of z (1x1 -> 4x4).

    Parameter `kernel` (4, 4, latent_dim, features), as flax's `ConvTranspose`.
    (N, latent_dim) -> (N, 4, 4, features), or (features, 4, 4, N) channels-major.
    """

    features: int
    dtype: Any = jnp.float32
    channels_major: bool = False

    @nn.compact
    def __call__(self, z_NxL: jax.Array) -> jax.Array:
        shape = (4, 4, z_NxL.shape[-1], self.features)
        kernel = self.param("kernel", conv_init, shape, jnp.float32).astype(self.dtype)
        z = z_NxL.astype(self.dtype)
        if self.channels_major:
            return project_dot(z, kernel)
        return conv_transpose_lax(z[:, None, None, :], kernel, 1, 3)


class ProjectDense(nn.Module):
    """The SNGAN generator's first layer: a dense layer from z to a 4x4 map (no bias).

    Parameter `kernel` (latent_dim, 16 * features); the output is read as NHWC:
    (N, 4, 4, features), or (features, 4, 4, N) channels-major.
    """

    features: int
    dtype: Any = jnp.float32
    channels_major: bool = False

    @nn.compact
    def __call__(self, z_NxL: jax.Array) -> jax.Array:
        shape = (z_NxL.shape[-1], 16 * self.features)
        kernel = self.param("kernel", conv_init, shape, jnp.float32).astype(self.dtype)
        z = z_NxL.astype(self.dtype)
        if self.channels_major:
            return dense_dot(z, kernel, 4, 4)
        return jnp.dot(z, kernel).reshape(z.shape[0], 4, 4, self.features)


class UpsampleConvTranspose(nn.Module):
    """A 4x4 stride-2 transposed convolution with PyTorch's padding=1 (doubles H and W).

    Parameter `conv/kernel` (4, 4, in, features), as a flax `ConvTranspose` named `conv`.
    """

    features: int
    dtype: Any = jnp.float32
    channels_major: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (4, 4, x.shape[channel_axis(self.channels_major)], self.features)
        kernel = Kernel(shape, name="conv")().astype(self.dtype)
        if self.channels_major:
            return conv_transpose_dot(x, kernel)
        # PyTorch padding p corresponds to lax padding k - 1 - p = 2 on each side.
        return conv_transpose_lax(x.astype(self.dtype), kernel, 2, 2)


class UpsampleSubpixel(nn.Module):
    """The same function as `UpsampleConvTranspose` (NHWC), as a convolution and depth-to-space.

    See `gan_jax.conv.conv_transpose_subpixel`. The parameter is stored in the
    transposed convolution's (4, 4, in, out) layout, so checkpoints of either
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
        return conv_transpose_subpixel(x.astype(self.dtype), kernel)


def upsample_conv(
    features: int, subpixel: bool, dtype: Any, name: str, channels_major: bool = False
) -> nn.Module:
    """The generator's stride-2 upsampling layer (`subpixel` applies to NHWC only)."""
    if subpixel and not channels_major:
        return UpsampleSubpixel(features, dtype=dtype, name=name)
    return UpsampleConvTranspose(features, dtype=dtype, channels_major=channels_major, name=name)


def logit_layer(
    x: jax.Array,
    labels: jax.Array | None,
    update_sn: bool,
    *,
    num_classes: int,
    spectral_norm: bool,
    use_bias: bool,
    dtype: Any,
    channels_major: bool,
) -> jax.Array:
    """A discriminator's last layer, a full-size "valid" convolution to one logit: -> (N,).

    Its parameters are `logit/kernel` (H, W, C, 1) (and `logit/bias`); a
    conditional discriminator adds the projection term embed(y)^T h (submodule
    `projection`). `x` is (N, H, W, C), or (C, H, W, N) with `channels_major`.
    Call it from a compact method: the submodules belong to the caller.
    """
    if channels_major:
        c, h, w, n = x.shape
    else:
        n, h, w, c = x.shape
    kernel, bias = Weight(
        (h, w, c, 1), use_bias=use_bias, spectral_norm=spectral_norm, name="logit"
    )(update_sn)
    if channels_major:
        logit = logit_dot(x, kernel.astype(dtype)).astype(jnp.float32)
    else:
        logit = conv_lax(x, kernel.astype(dtype), 1, 0).reshape(n).astype(jnp.float32)
    if bias is not None:
        logit = logit + bias[0]
    if num_classes:
        embed = Projection(num_classes, spectral_norm, name="projection")(
            labels, (h, w, c), update_sn
        )
        spec = "nhwc,chwn->n" if channels_major else "nhwc,nhwc->n"
        logit = logit + jnp.einsum(spec, embed, x.astype(jnp.float32))
    return logit
