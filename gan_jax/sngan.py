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

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.layers import Conv, ProjectDense, logit_layer, norm_layers, num_stages, upsample_conv
from gan_jax.networks import DiscriminatorBase, GeneratorBase

LEAKY_SLOPE = 0.1


class Generator(GeneratorBase):
    """SNGAN's standard-CNN generator: (N, latent_dim) -> (N, S, S, channels) in [-1, 1].

    Attributes: see `gan_jax.networks.GeneratorBase`; `width` is the channels
    of the last hidden stage (the dense layer has `width * 2**stages`).
    """

    def forward(
        self, z_NxL: jax.Array, train: bool, labels: jax.Array | None, channels_major: bool
    ) -> jax.Array:
        cm = channels_major
        n = num_stages(self.image_size)
        bn = norm_layers(self.num_classes, self.axis_name, self.dtype, cm, labels, train)
        x = ProjectDense(self.width * 2**n, self.dtype, cm, name="project")(z_NxL)
        x = nn.relu(bn("bn0", x))
        for i in range(n):
            features = self.width * 2 ** (n - 1 - i)
            x = upsample_conv(features, self.subpixel, self.dtype, f"up{i + 1}", cm)(x)
            x = nn.relu(bn(f"bn{i + 1}", x))
        out = Conv(self.channels, 3, use_bias=True, dtype=self.dtype, channels_major=cm, name="out")
        return jnp.tanh(out(x).astype(jnp.float32))


class Discriminator(DiscriminatorBase):
    """SNGAN's standard-CNN discriminator: images (N, S, S, C) -> logits (N,).

    Attributes: see `gan_jax.networks.DiscriminatorBase`; `width` is the
    channels of the first stage (3x3 conv and 4x4 stride-2 conv), doubled per stage.
    """

    def forward(
        self,
        x: jax.Array,
        train: bool,
        labels: jax.Array | None,
        update_sn: bool,
        channels_major: bool,
    ) -> jax.Array:
        n = num_stages(self.image_size)
        conv = functools.partial(
            Conv,
            use_bias=True,
            spectral_norm=self.spectral_norm,
            dtype=self.dtype,
            channels_major=channels_major,
        )

        def block(name: str, size: int, features: int, x: jax.Array) -> jax.Array:
            """A 3x3 stride-1 or 4x4 stride-2 convolution with bias, then leaky ReLU."""
            return nn.leaky_relu(conv(features, size, name=name)(x, update_sn), LEAKY_SLOPE)

        for i in range(n):
            x = block(f"conv{i}", 3, self.width * 2**i, x)
            x = block(f"down{i}", 4, self.width * 2**i, x)
        x = block(f"conv{n}", 3, self.width * 2**n, x)
        return logit_layer(
            x,
            labels,
            update_sn,
            num_classes=self.num_classes,
            spectral_norm=self.spectral_norm,
            use_bias=True,
            dtype=self.dtype,
            channels_major=channels_major,
        )
