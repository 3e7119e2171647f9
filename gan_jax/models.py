"""DCGAN generator and discriminator as Flax linen modules (NHWC in and out).

At the default sizes (latent 100, width 64, 32x32x3) these reproduce the classic
DCGAN exactly: the same layers, the same parameter counts, no biases, BatchNorm
with PyTorch's momentum (0.1) and epsilon (1e-5), and DCGAN initialisation.
Every larger power-of-two image size adds one stage, as in pytorch/examples.

`conv_impl` picks one of two formulations of the same functions from the same
parameters (`gan_jax.conv`): "lax" runs XLA convolutions on NHWC activations,
"dot" matrix products on channels-major activations (several times faster on
XLA:CPU). The layers of `gan_jax.layers` implement both.

Two switches extend both networks, in both implementations:

* `num_classes > 0` makes them class-conditional: the generator's BatchNorm
  layers take their scale and shift from per-class tables (categorical
  conditional BatchNorm), and the discriminator is a projection discriminator
  (Miyato & Koyama 2018): logit(x, y) = w^T h(x) + b + embed(y)^T h(x), where h
  are the features that the last layer reads. Both then take `labels` (N,).
* the discriminator's `spectral_norm` divides every weight by its largest
  singular value (`gan_jax.spectral`) and, as in SNGAN, replaces its BatchNorm
  layers by biases.

The shared layers and kernels that used to live here are importable from this
module for one more release, with a DeprecationWarning naming their new home.
"""

from __future__ import annotations

import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax import conv, layers
from gan_jax.layers import (
    Conv,
    ProjectConvTranspose,
    logit_layer,
    norm_layers,
    num_stages,
    upsample_conv,
)
from gan_jax.networks import DiscriminatorBase, GeneratorBase


class Generator(GeneratorBase):
    """The DCGAN generator: latent vectors (N, latent_dim) -> images (N, S, S, channels).

    A 4x4 "valid" transposed convolution of z, then one 4x4 stride-2 transposed
    convolution per stage, each but the last followed by BatchNorm and ReLU; tanh.
    Attributes: see `gan_jax.networks.GeneratorBase`.
    """

    def forward(
        self, z_NxL: jax.Array, train: bool, labels: jax.Array | None, channels_major: bool
    ) -> jax.Array:
        cm = channels_major
        n = num_stages(self.image_size)
        widths = [self.width * 2 ** (n - 1 - i) for i in range(n)]
        bn = norm_layers(self.num_classes, self.axis_name, self.dtype, cm, labels, train)
        x = ProjectConvTranspose(widths[0], self.dtype, cm, name="project")(z_NxL)
        x = nn.relu(bn("bn0", x))
        for i, features in enumerate(widths[1:] + [self.channels]):
            x = upsample_conv(features, self.subpixel, self.dtype, f"up{i + 1}", cm)(x)
            if i + 1 < n:
                x = nn.relu(bn(f"bn{i + 1}", x))
        return jnp.tanh(x.astype(jnp.float32))


class Discriminator(DiscriminatorBase):
    """The DCGAN discriminator: images (N, S, S, C) -> real/fake logits (N,).

    One 4x4 stride-2 convolution per stage, each followed by BatchNorm (but the
    first) and leaky ReLU (0.2), then a full-size convolution to one logit.
    Attributes: see `gan_jax.networks.DiscriminatorBase`; `width` is the first
    stage's channels.
    """

    def forward(
        self,
        x: jax.Array,
        train: bool,
        labels: jax.Array | None,
        update_sn: bool,
        channels_major: bool,
    ) -> jax.Array:
        cm, sn = channels_major, self.spectral_norm
        bn = norm_layers(0, self.axis_name, self.dtype, cm, None, train)
        for i in range(num_stages(self.image_size)):
            # Spectral norm replaces BatchNorm by a bias, as in SNGAN.
            x = Conv(
                self.width * 2**i,
                4,
                use_bias=sn,
                spectral_norm=sn,
                dtype=self.dtype,
                channels_major=cm,
                name=f"down{i}",
            )(x, update_sn)
            if i > 0 and not sn:
                x = bn(f"bn{i}", x)
            x = nn.leaky_relu(x, 0.2)
        return logit_layer(
            x,
            labels,
            update_sn,
            num_classes=self.num_classes,
            spectral_norm=sn,
            use_bias=sn,
            dtype=self.dtype,
            channels_major=cm,
        )


# Names that moved to gan_jax.layers and gan_jax.conv; importable from here for one release.
_MOVED = {
    **{
        name: layers
        for name in (
            "BN_EPSILON",
            "BN_MOMENTUM",
            "SUPPORTED_IMAGE_SIZES",
            "ConditionalBatchNorm",
            "Projection",
            "UpsampleConvTranspose",
            "UpsampleSubpixel",
            "Weight",
            "bn_scale_init",
            "check_labels",
            "conv_init",
        )
    },
    **{
        name: conv
        for name in (
            "conv3x3_dot",
            "conv_dot",
            "conv_lax",
            "conv_transpose_dot",
            "from_channels_major",
            "logit_dot",
            "matmul",
            "project_dot",
            "resolve_conv_impl",
            "subpixel_kernel",
            "to_channels_major",
        )
    },
}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'gan_jax.models' has no attribute {name!r}")
    module = _MOVED[name]
    warnings.warn(
        f"gan_jax.models.{name} moved to {module.__name__}.{name}; import it from there.",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(module, name)
