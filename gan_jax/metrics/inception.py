"""The FID Inception-v3 (TensorFlow's "inception-2015-12-05" graph) as a Flax linen module.

This is the network behind every published FID: TTUR's TensorFlow code, pytorch-fid and
StyleGAN2-ADA all run the same graph. It differs from the usual Inception-v3 in three
places, all reproduced here: average pools ignore the zero padding, the last block's
pool branch is a max pool, and the classifier has 1008 outputs.

Layout is NHWC. Each convolution's BatchNorm (TensorFlow: no scale, eps 1e-3) is folded
into the convolution's kernel and bias when the weights are converted, so every layer
here is a biased convolution followed by ReLU. Parameter names follow torchvision's
Inception3 (`Conv2d_1a_3x3`, `Mixed_5b/branch1x1`, ...); `convert.py` maps the TensorFlow
graph's names onto them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008

Padding = tuple[tuple[int, int], tuple[int, int]]


def _same(kernel: tuple[int, int]) -> Padding:
    return ((kernel[0] // 2, kernel[0] // 2), (kernel[1] // 2, kernel[1] // 2))


class ConvReLU(nn.Module):
    """Convolution (BatchNorm folded into kernel and bias) then ReLU."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    strides: int = 1
    same: bool = True
    dtype: Any = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        padding = _same(self.kernel) if self.same else ((0, 0), (0, 0))
        x = nn.Conv(
            self.features,
            self.kernel,
            strides=(self.strides, self.strides),
            padding=padding,
            dtype=self.dtype,
            precision=self.precision,
            name="conv",
        )(x)
        return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    # TensorFlow's SAME average pool divides by the number of valid (unpadded) inputs.
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME", count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b/c/d): 1x1, 5x5, double 3x3 and pool branches."""

    pool_features: int
    conv: Any = ConvReLU

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.conv
        b1 = c(64, name="branch1x1")(x)
        b5 = c(48, name="branch5x5_1")(x)
        b5 = c(64, (5, 5), name="branch5x5_2")(b5)
        b3 = c(64, name="branch3x3dbl_1")(x)
        b3 = c(96, (3, 3), name="branch3x3dbl_2")(b3)
        b3 = c(96, (3, 3), name="branch3x3dbl_3")(b3)
        bp = c(self.pool_features, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction (Mixed_6a)."""

    conv: Any = ConvReLU

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.conv
        b3 = c(384, (3, 3), strides=2, same=False, name="branch3x3")(x)
        bd = c(64, name="branch3x3dbl_1")(x)
        bd = c(96, (3, 3), name="branch3x3dbl_2")(bd)
        bd = c(96, (3, 3), strides=2, same=False, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block (Mixed_6b..e) with factorised 7x7 convolutions."""

    channels_7x7: int
    conv: Any = ConvReLU

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c, c7 = self.conv, self.channels_7x7
        b1 = c(192, name="branch1x1")(x)
        b7 = c(c7, name="branch7x7_1")(x)
        b7 = c(c7, (1, 7), name="branch7x7_2")(b7)
        b7 = c(192, (7, 1), name="branch7x7_3")(b7)
        bd = c(c7, name="branch7x7dbl_1")(x)
        bd = c(c7, (7, 1), name="branch7x7dbl_2")(bd)
        bd = c(c7, (1, 7), name="branch7x7dbl_3")(bd)
        bd = c(c7, (7, 1), name="branch7x7dbl_4")(bd)
        bd = c(192, (1, 7), name="branch7x7dbl_5")(bd)
        bp = c(192, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction (Mixed_7a)."""

    conv: Any = ConvReLU

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.conv
        b3 = c(192, name="branch3x3_1")(x)
        b3 = c(320, (3, 3), strides=2, same=False, name="branch3x3_2")(b3)
        b7 = c(192, name="branch7x7x3_1")(x)
        b7 = c(192, (1, 7), name="branch7x7x3_2")(b7)
        b7 = c(192, (7, 1), name="branch7x7x3_3")(b7)
        b7 = c(192, (3, 3), strides=2, same=False, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block (Mixed_7b, Mixed_7c); the FID graph's Mixed_7c pools with a max, not a mean."""

    max_pool: bool = False
    conv: Any = ConvReLU

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.conv
        b1 = c(320, name="branch1x1")(x)
        b3 = c(384, name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [c(384, (1, 3), name="branch3x3_2a")(b3), c(384, (3, 1), name="branch3x3_2b")(b3)],
            axis=-1,
        )
        bd = c(448, name="branch3x3dbl_1")(x)
        bd = c(384, (3, 3), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                c(384, (1, 3), name="branch3x3dbl_3a")(bd),
                c(384, (3, 1), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        if self.max_pool:
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_3x3(x)
        bp = c(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """FID Inception-v3: (N, 299, 299, 3) inputs in [-1, 1) -> (features (N, 2048), logits).

    The input is already resized and scaled as `(x - 128) / 128` for x in [0, 255]
    (`preprocess.to_inception_input` does both). `logits` are the 1008-way
    classifier's pre-softmax outputs (for the Inception Score) when `num_classes` is set,
    else None.

    Attributes:
      num_classes: 1008 to build the classifier, None for features only.
      classifier_bias: add the classifier's bias. False by default: the Inception Score's
        original code (and StyleGAN2-ADA's, which matches it) leaves it out.
      dtype: computation dtype; float32 reproduces the reference features.
      precision: `jax.lax.Precision` of the convolutions; HIGHEST keeps float32 accuracy
        on accelerators that would otherwise use reduced-precision matmuls.
    """

    num_classes: int | None = None
    classifier_bias: bool = False
    dtype: Any = jnp.float32
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x_Nx299x299x3: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        def conv(*args: Any, **kwargs: Any) -> ConvReLU:
            return ConvReLU(*args, dtype=self.dtype, precision=self.precision, **kwargs)

        x = x_Nx299x299x3.astype(self.dtype)
        x = conv(32, (3, 3), strides=2, same=False, name="Conv2d_1a_3x3")(x)
        x = conv(32, (3, 3), same=False, name="Conv2d_2a_3x3")(x)
        x = conv(64, (3, 3), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = conv(80, name="Conv2d_3b_1x1")(x)
        x = conv(192, (3, 3), same=False, name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)
        for name, pool_features in _A_BLOCKS:
            x = InceptionA(pool_features, conv=conv, name=name)(x)
        x = InceptionB(conv=conv, name="Mixed_6a")(x)
        for name, channels in _C_BLOCKS:
            x = InceptionC(channels, conv=conv, name=name)(x)
        x = InceptionD(conv=conv, name="Mixed_7a")(x)
        x = InceptionE(max_pool=False, conv=conv, name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, conv=conv, name="Mixed_7c")(x)
        features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        logits = None
        if self.num_classes is not None:
            logits = Classifier(self.num_classes, self.classifier_bias, self.precision, name="fc")(
                features
            )
        return features, logits


class Classifier(nn.Module):
    """The 1008-way softmax layer's pre-activations; the bias is stored but optional."""

    num_classes: int = NUM_CLASSES
    use_bias: bool = False
    precision: Any = None

    @nn.compact
    def __call__(self, features_NxD: jax.Array) -> jax.Array:
        d = features_NxD.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (d, self.num_classes))
        bias = self.param("bias", nn.initializers.zeros, (self.num_classes,))
        logits = jnp.dot(features_NxD, kernel, precision=self.precision)
        return logits + bias[None, :] if self.use_bias else logits


_A_BLOCKS: Sequence[tuple[str, int]] = (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64))
_C_BLOCKS: Sequence[tuple[str, int]] = (
    ("Mixed_6b", 128),
    ("Mixed_6c", 160),
    ("Mixed_6d", 160),
    ("Mixed_6e", 192),
)
