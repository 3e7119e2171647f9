"""The "standard CNN" of the SNGAN paper (Miyato et al. 2018, Table 3), `config.arch="sngan_cnn"`.

At 32x32x3 with widths 64 (`configs/cifar10_sngan.py`):

* generator: z (128) -> dense 4x4x512 -> BN, ReLU -> three 4x4 stride-2
  transposed convolutions to 256, 128 and 64 channels, each with BN and ReLU ->
  3x3 convolution to 3 channels -> tanh;
* discriminator: 3x3 conv 64, 4x4 stride-2 conv 64, 3x3 conv 128, 4x4 s2 conv
  128, 3x3 conv 256, 4x4 s2 conv 256, 3x3 conv 512, each followed by leaky ReLU
  (slope 0.1) -> dense to one logit. No BatchNorm; every layer has a bias; with
  `spectral_norm` every weight is spectrally normalised.

Other power-of-two sizes add or remove stride-2 stages, as in the DCGAN. Weights
are initialised N(0, 0.02) as in the authors' code. The same options as the DCGAN
apply: `conv_impl` ("dot"/"lax", the same functions from the same parameters),
`subpixel`, `dtype`, `axis_name`, `num_classes` (conditional BatchNorm in G, a
projection discriminator) and, for D, `spectral_norm`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models import (
    Weight,
    _add_bias,
    _Kernel,
    _norm,
    _UpKernel,
    check_labels,
    conv3x3_dot,
    conv_dot,
    conv_lax,
    conv_transpose_dot,
    from_channels_major,
    logit_layer,
    matmul,
    num_stages,
    resolve_conv_impl,
    to_channels_major,
    upsample_conv,
)

LEAKY_SLOPE = 0.1


class Generator(nn.Module):
    """SNGAN's standard-CNN generator: (N, latent_dim) -> (N, S, S, channels) in [-1, 1].

    Attributes are those of `gan_jax.models.Generator`; `width` is the channels
    of the last hidden stage (the dense layer has `width * 2**stages`).
    """

    image_size: int = 32
    channels: int = 3
    width: int = 64
    dtype: Any = jnp.float32
    axis_name: str | None = None
    subpixel: bool = False
    conv_impl: str = "auto"
    num_classes: int = 0

    @nn.compact
    def __call__(
        self, z_NxL: jax.Array, train: bool = True, labels: jax.Array | None = None
    ) -> jax.Array:
        check_labels(self.num_classes, labels, "generator")
        dot = resolve_conv_impl(self.conv_impl) == "dot"
        n = num_stages(self.image_size)
        c0 = self.width * 2**n
        latent_dim = z_NxL.shape[-1]
        kernel = _Kernel((latent_dim, 16 * c0), name="project")().astype(self.dtype)
        z = z_NxL.astype(self.dtype)
        if dot:
            # The dense output, (N, 4, 4, C0) in NHWC order, as (C0, 4, 4, N).
            w = kernel.reshape(latent_dim, 4, 4, c0).transpose(3, 1, 2, 0)
            x = matmul(w.reshape(16 * c0, latent_dim), jnp.transpose(z))
            x = x.reshape(c0, 4, 4, z.shape[0])
        else:
            x = jnp.dot(z, kernel).reshape(z.shape[0], 4, 4, c0)
        axis = 0 if dot else -1
        x = nn.relu(self._norm("bn0", x, labels, train, axis))
        for i in range(n):
            features = self.width * 2 ** (n - 1 - i)
            if dot:
                up = _UpKernel((4, 4, x.shape[0], features), name=f"up{i + 1}")()
                x = conv_transpose_dot(x, up.astype(self.dtype))
            else:
                x = upsample_conv(features, self.subpixel, self.dtype, name=f"up{i + 1}")(x)
            x = nn.relu(self._norm(f"bn{i + 1}", x, labels, train, axis))
        in_channels = x.shape[0] if dot else x.shape[-1]
        kernel, bias = Weight((3, 3, in_channels, self.channels), use_bias=True, name="out")()
        kernel = kernel.astype(self.dtype)
        x = conv3x3_dot(x, kernel) if dot else conv_lax(x, kernel, 1, 1)
        x = jnp.tanh(_add_bias(x, bias, dot).astype(jnp.float32))
        return from_channels_major(x) if dot else x

    def _norm(self, name: str, x: jax.Array, labels: Any, train: bool, axis: int) -> jax.Array:
        return _norm(self.num_classes, self.axis_name, self.dtype, name, x, labels, train, axis)


class Discriminator(nn.Module):
    """SNGAN's standard-CNN discriminator: images (N, S, S, C) -> logits (N,).

    Attributes are those of `gan_jax.models.Discriminator`; `width` is the
    channels of the first stage (3x3 conv and 4x4 stride-2 conv), doubled per stage.
    """

    image_size: int = 32
    channels: int = 3
    width: int = 64
    dtype: Any = jnp.float32
    axis_name: str | None = None
    conv_impl: str = "auto"
    num_classes: int = 0
    spectral_norm: bool = False

    @nn.compact
    def __call__(
        self,
        x_NxSxSxC: jax.Array,
        train: bool = True,
        labels: jax.Array | None = None,
        update_sn: bool | None = None,
    ) -> jax.Array:
        """Logits (N,); `labels` and `update_sn` as in `gan_jax.models.Discriminator`."""
        check_labels(self.num_classes, labels, "discriminator")
        update_sn = train if update_sn is None else update_sn
        dot = resolve_conv_impl(self.conv_impl) == "dot"
        n = num_stages(self.image_size)
        x = x_NxSxSxC.astype(self.dtype)
        if dot:
            x = to_channels_major(x)
        for i in range(n):
            features = self.width * 2**i
            x = self._conv(f"conv{i}", x, 3, features, dot, update_sn)
            x = self._conv(f"down{i}", x, 4, features, dot, update_sn)
        x = self._conv(f"conv{n}", x, 3, self.width * 2**n, dot, update_sn)
        return logit_layer(
            x,
            labels,
            update_sn,
            num_classes=self.num_classes,
            spectral_norm=self.spectral_norm,
            use_bias=True,
            dtype=self.dtype,
            channels_major=dot,
        )

    def _conv(
        self, name: str, x: jax.Array, size: int, features: int, dot: bool, update_sn: bool
    ) -> jax.Array:
        """A 3x3 stride-1 or 4x4 stride-2 convolution (padding 1) with bias, then leaky ReLU."""
        in_channels = x.shape[0] if dot else x.shape[-1]
        kernel, bias = Weight(
            (size, size, in_channels, features),
            use_bias=True,
            spectral_norm=self.spectral_norm,
            name=name,
        )(update_sn)
        kernel = kernel.astype(self.dtype)
        if dot:
            y = conv3x3_dot(x, kernel) if size == 3 else conv_dot(x, kernel)
        else:
            y = conv_lax(x, kernel, 1 if size == 3 else 2, 1)
        return nn.leaky_relu(_add_bias(y, bias, dot), LEAKY_SLOPE)
