"""The interface every GAN architecture implements (`gan_jax.models`, `gan_jax.sngan`).

`state.make_models` builds any registered architecture from the same attributes,
`train_step` calls every discriminator the same way and the trainer clones
modules with another `axis_name` or `conv_impl`: `GeneratorBase` and
`DiscriminatorBase` declare those attributes and calls once. A network writes
only its `forward`, on activations in the layout its layers use (channels-major
for `conv_impl="dot"`, see `gan_jax.layers`); the call checks the labels and
converts between NHWC images and that layout.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.conv import from_nhwc, to_nhwc, uses_channels_major
from gan_jax.layers import check_labels


class GeneratorBase(nn.Module):
    """What every generator takes and returns: (N, latent_dim) -> (N, S, S, channels) in [-1, 1].

    A subclass writes `forward`; `__call__` checks the labels and converts the
    images to NHWC.

    Attributes:
      image_size: output side; a power of two from 16 to 256.
      channels: output channels (1 grayscale, 3 RGB).
      width: channels of the last hidden stage; earlier stages double it.
      dtype: computation dtype (float32, or bfloat16 for mixed precision);
        parameters and BatchNorm statistics stay float32.
      axis_name: the mapped axis for cross-replica BatchNorm under pmap/shard_map.
      subpixel: with conv_impl="lax", compute each stride-2 transposed
        convolution as one 3x3 convolution followed by depth-to-space (the same
        function, faster than XLA's transposed convolution).
      conv_impl: "dot", "lax" or "auto" ("dot" on CPU, "lax" elsewhere); see
        `gan_jax.conv`.
      num_classes: with > 0, class-conditional BatchNorm; then pass `labels` (N,).
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
        """Images of latent vectors `z_NxL`; `labels` (N,) for a conditional generator."""
        check_labels(self.num_classes, labels, "generator")
        channels_major = uses_channels_major(self.conv_impl)
        return to_nhwc(self.forward(z_NxL, train, labels, channels_major), channels_major)

    def forward(
        self, z_NxL: jax.Array, train: bool, labels: jax.Array | None, channels_major: bool
    ) -> jax.Array:
        """The images in [-1, 1], (C, S, S, N) with `channels_major`, else (N, S, S, C)."""
        raise NotImplementedError


class DiscriminatorBase(nn.Module):
    """What every discriminator takes and returns: images (N, S, S, C) -> logits (N,).

    A subclass writes `forward`; `__call__` checks the labels and converts the
    images to the computation dtype and the layers' layout. Attributes are as in
    `GeneratorBase` (`width` is the first stage's channels), and `spectral_norm`
    normalises every weight by its largest singular value.
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
        """Logits (N,) of images (N, S, S, C); no sigmoid inside.

        `labels` (N,) are required by a conditional discriminator (num_classes > 0).
        `update_sn` (default: `train`) runs one power iteration of the spectral
        norm estimates and stores it; `train_step` sets it on one pass per step.
        """
        check_labels(self.num_classes, labels, "discriminator")
        update_sn = train if update_sn is None else update_sn
        channels_major = uses_channels_major(self.conv_impl)
        x = from_nhwc(x_NxSxSxC.astype(self.dtype), channels_major)
        return self.forward(x, train, labels, update_sn, channels_major)

    def forward(
        self,
        x: jax.Array,
        train: bool,
        labels: jax.Array | None,
        update_sn: bool,
        channels_major: bool,
    ) -> jax.Array:
        """The logits (N,) of images `x` in the layers' layout and dtype."""
        raise NotImplementedError
