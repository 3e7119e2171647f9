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

The blocks compute the same functions as the graph, arranged for speed (each step
exact in real arithmetic; float32 results agree with the graph's to ~1e-6):

* the 1x1 branches that read a block's input are one matrix product (their kernels
  concatenated), and `gan_jax.conv.conv_nhwc` runs the other convolutions on XLA:CPU's
  fast path;
* the average-pool branch convolves first and pools after: a 1x1 convolution (per
  pixel) and the average pool (per channel, fixed weights) commute, so its kernel
  joins the block's one product and the pool averages 32-192 channels, not 192-2048;
* pools are maxima / sums of shifted slices, one separable pass per axis;
* on CPU the stem runs one image at a time (`stem_batch`), and `prepare` concatenates
  the 1x1 kernels once instead of at every call.

`InceptionExtractor` does all of this (and compiles for XLA:CPU's Eigen kernels); a
plain `InceptionV3().apply({"params": params}, x)` computes the same features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import conv as conv_kernels

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008

Weights = tuple[jax.Array, jax.Array]  # (kernel (kh, kw, in, out), bias (out,))


class _KernelBias(nn.Module):
    """One layer's folded kernel and bias, declared as `nn.Conv` declares them."""

    shape: tuple[int, int, int, int]

    @nn.compact
    def __call__(self) -> Weights:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), self.shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, self.shape[-1:], jnp.float32)
        return kernel, bias


class ConvWeights(nn.Module):
    """The parameters of one `ConvReLU` layer (`<name>/conv/{kernel,bias}`), not applied.

    For blocks that compute several layers in one product.
    """

    features: int
    kernel: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, in_features: int) -> Weights:
        return _KernelBias((*self.kernel, in_features, self.features), name="conv")()


def _bias_relu(y: jax.Array, bias: jax.Array) -> jax.Array:
    return nn.relu(y + bias.astype(y.dtype)[None, None, None, :])


def conv_relu(
    x: jax.Array,
    weights: Weights,
    strides: int = 1,
    same: bool = True,
    dtype: Any = jnp.float32,
    precision: Any = None,
    pad_unpadded: bool = True,
) -> jax.Array:
    """ReLU(conv(x) + bias) with "same" padding (stride 1) or none."""
    kernel, bias = weights
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if kernel.shape[:2] == (1, 1) and strides == 1:
        y = conv_kernels.pointwise_conv(x, kernel, precision)
    else:
        padding = conv_kernels.same_padding(kernel.shape[:2]) if same else ((0, 0), (0, 0))
        y = conv_kernels.conv_nhwc(x, kernel, strides, padding, precision, pad_unpadded)
    return _bias_relu(y, bias)


class ConvReLU(nn.Module):
    """Convolution (BatchNorm folded into kernel and bias) then ReLU."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    strides: int = 1
    same: bool = True
    dtype: Any = jnp.float32
    precision: Any = None
    pad_unpadded: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        weights = _KernelBias((*self.kernel, x.shape[-1], self.features), name="conv")()
        return conv_relu(
            x, weights, self.strides, self.same, self.dtype, self.precision, self.pad_unpadded
        )


def _pool_counts(h: int, w: int) -> np.ndarray:
    """(1, h, w, 1) number of unpadded inputs under each 3x3 window (stride 1, SAME)."""

    def per_axis(n: int) -> np.ndarray:
        i = np.arange(n)
        return np.minimum(i + 1, n - 1) - np.maximum(i - 1, 0) + 1

    return (per_axis(h)[:, None] * per_axis(w)[None, :])[None, :, :, None].astype(np.float32)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """TensorFlow's SAME 3x3 average pool: divides by the number of valid (unpadded) inputs."""
    _, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    s = xp[:, :-2] + xp[:, 1:-1] + xp[:, 2:]
    s = s[:, :, :-2] + s[:, :, 1:-1] + s[:, :, 2:]
    return s / jnp.asarray(_pool_counts(h, w), x.dtype)


def _max3(x: jax.Array, axis: int, stride: int, size: int) -> jax.Array:
    """Maximum over windows of 3 along `axis` (1 or 2): `size` outputs, `stride` apart."""

    def tap(k: int) -> jax.Array:
        index = [slice(None)] * x.ndim
        index[axis] = slice(k, k + stride * (size - 1) + 1, stride)
        return x[tuple(index)]

    return jnp.maximum(jnp.maximum(tap(0), tap(1)), tap(2))


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    _, h, w, _ = x.shape
    x = _max3(x, 1, 2, (h - 3) // 2 + 1)
    return _max3(x, 2, 2, (w - 3) // 2 + 1)


def _max_pool_3x3_same(x: jax.Array) -> jax.Array:
    _, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    return _max3(_max3(xp, 1, 1, h), 2, 1, w)


def _pointwise_branches(
    x: jax.Array,
    kernel: jax.Array,
    biases: Sequence[jax.Array],
    pool_bias: jax.Array | None,
    dtype: Any,
    precision: Any,
) -> list[jax.Array]:
    """A block's 1x1 layers that read `x`, and its average-pool branch, from ONE product.

    `kernel` is the layers' kernels concatenated (the pool branch's last), `biases`
    theirs, `pool_bias` the pool branch's (None: no pool branch in the product).
    """
    sizes = [b.shape[0] for b in biases] + ([] if pool_bias is None else [pool_bias.shape[0]])
    y = conv_kernels.pointwise_conv(x.astype(dtype), kernel.astype(dtype), precision)
    outs = jnp.split(y, np.cumsum(sizes)[:-1], axis=-1)
    acts = [_bias_relu(o, b) for o, b in zip(outs[: len(biases)], biases, strict=True)]
    if pool_bias is not None:
        acts.append(_bias_relu(_avg_pool_3x3(outs[-1]), pool_bias))
    return acts


# Collection of the kernels that `prepare` concatenates once instead of at every call.
PREPARED = "prepared"


class _Block(nn.Module):
    dtype: Any = jnp.float32
    precision: Any = None
    pad_unpadded: bool = True

    def conv(self, *args: Any, **kwargs: Any) -> ConvReLU:
        return ConvReLU(
            *args,
            dtype=self.dtype,
            precision=self.precision,
            pad_unpadded=self.pad_unpadded,
            **kwargs,
        )

    def pointwise(
        self, x: jax.Array, branches: Sequence[tuple[str, int]], avg_pool_branch: int | None
    ) -> list[jax.Array]:
        """`branches`: (name, features) of the 1x1 layers; the pool branch is `branch_pool`."""
        c = x.shape[-1]
        weights = [ConvWeights(f, name=name)(c) for name, f in branches]
        if avg_pool_branch is not None:
            weights.append(ConvWeights(avg_pool_branch, name="branch_pool")(c))
        if self.has_variable(PREPARED, "pointwise_kernel"):
            kernel = self.get_variable(PREPARED, "pointwise_kernel")
        else:
            kernel = jnp.concatenate([k for k, _ in weights], axis=-1)
            if self.is_mutable_collection(PREPARED) and not self.is_initializing():
                self.put_variable(PREPARED, "pointwise_kernel", kernel)
        biases = [b for _, b in weights[: len(branches)]]
        pool_bias = weights[-1][1] if avg_pool_branch is not None else None
        return _pointwise_branches(x, kernel, biases, pool_bias, self.dtype, self.precision)


class InceptionA(_Block):
    """35x35 block (Mixed_5b/c/d): 1x1, 5x5, double 3x3 and pool branches."""

    pool_features: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.conv
        b1, b5, b3, bp = self.pointwise(
            x, [("branch1x1", 64), ("branch5x5_1", 48), ("branch3x3dbl_1", 64)], self.pool_features
        )
        b5 = c(64, (5, 5), name="branch5x5_2")(b5)
        b3 = c(96, (3, 3), name="branch3x3dbl_2")(b3)
        b3 = c(96, (3, 3), name="branch3x3dbl_3")(b3)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
    """35x35 -> 17x17 reduction (Mixed_6a)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.conv
        b3 = c(384, (3, 3), strides=2, same=False, name="branch3x3")(x)
        bd = c(64, name="branch3x3dbl_1")(x)
        bd = c(96, (3, 3), name="branch3x3dbl_2")(bd)
        bd = c(96, (3, 3), strides=2, same=False, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x.astype(self.dtype))], axis=-1)


class InceptionC(_Block):
    """17x17 block (Mixed_6b..e) with factorised 7x7 convolutions."""

    channels_7x7: int = 128

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c, c7 = self.conv, self.channels_7x7
        b1, b7, bd, bp = self.pointwise(
            x, [("branch1x1", 192), ("branch7x7_1", c7), ("branch7x7dbl_1", c7)], 192
        )
        b7 = c(c7, (1, 7), name="branch7x7_2")(b7)
        b7 = c(192, (7, 1), name="branch7x7_3")(b7)
        bd = c(c7, (7, 1), name="branch7x7dbl_2")(bd)
        bd = c(c7, (1, 7), name="branch7x7dbl_3")(bd)
        bd = c(c7, (7, 1), name="branch7x7dbl_4")(bd)
        bd = c(192, (1, 7), name="branch7x7dbl_5")(bd)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
    """17x17 -> 8x8 reduction (Mixed_7a)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.conv
        b3, b7 = self.pointwise(x, [("branch3x3_1", 192), ("branch7x7x3_1", 192)], None)
        b3 = c(320, (3, 3), strides=2, same=False, name="branch3x3_2")(b3)
        b7 = c(192, (1, 7), name="branch7x7x3_2")(b7)
        b7 = c(192, (7, 1), name="branch7x7x3_3")(b7)
        b7 = c(192, (3, 3), strides=2, same=False, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x.astype(self.dtype))], axis=-1)


class InceptionE(_Block):
    """8x8 block (Mixed_7b, Mixed_7c); the FID graph's Mixed_7c pools with a max, not a mean."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.conv
        outs = self.pointwise(
            x,
            [("branch1x1", 320), ("branch3x3_1", 384), ("branch3x3dbl_1", 448)],
            None if self.max_pool else 192,
        )
        b1, b3, bd = outs[:3]
        if self.max_pool:
            bp = c(192, name="branch_pool")(_max_pool_3x3_same(x.astype(self.dtype)))
        else:
            bp = outs[3]
        b3 = jnp.concatenate(
            [c(384, (1, 3), name="branch3x3_2a")(b3), c(384, (3, 1), name="branch3x3_2b")(b3)],
            axis=-1,
        )
        bd = c(384, (3, 3), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                c(384, (1, 3), name="branch3x3dbl_3a")(bd),
                c(384, (3, 1), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
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
      stem_batch: images per step of a loop over the stem (the layers before Mixed_5b),
        whose activations are the network's largest: on a CPU one image's fit in cache
        and these layers run ~1.5x faster than on a whole batch. With the batch sharded
        over D devices give a multiple of D (each step takes images from every shard).
        None: one per local device on a CPU backend, else no loop; 0: no loop. A batch
        it does not divide runs without the loop. Results are the same either way.
      pad_unpadded: give unpadded convolution axes one row of padding, which XLA:CPU's
        default (YNNPACK) kernels need to run fast (`gan_jax.conv.conv_nhwc`); the
        extractor compiles for the Eigen kernels instead and turns it off.
    """

    num_classes: int | None = None
    classifier_bias: bool = False
    dtype: Any = jnp.float32
    precision: Any = jax.lax.Precision.HIGHEST
    stem_batch: int | None = None
    pad_unpadded: bool = True

    @nn.compact
    def __call__(self, x_Nx299x299x3: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        block = {
            "dtype": self.dtype,
            "precision": self.precision,
            "pad_unpadded": self.pad_unpadded,
        }
        stem = [ConvWeights(f, k, name=name)(c) for name, c, f, k, _, _ in _STEM]

        def run_stem(x: jax.Array) -> jax.Array:
            x = x.astype(self.dtype)
            for weights, (name, _, _, _, strides, same) in zip(stem, _STEM, strict=True):
                x = conv_relu(
                    x, weights, strides, same, self.dtype, self.precision, self.pad_unpadded
                )
                if name in ("Conv2d_2b_3x3", "Conv2d_4a_3x3"):
                    x = _max_pool_3x3_s2(x)
            return x

        x = _in_steps(run_stem, x_Nx299x299x3, _resolve_stem_batch(self.stem_batch))
        for name, pool_features in _A_BLOCKS:
            x = InceptionA(pool_features=pool_features, name=name, **block)(x)
        x = InceptionB(name="Mixed_6a", **block)(x)
        for name, channels in _C_BLOCKS:
            x = InceptionC(channels_7x7=channels, name=name, **block)(x)
        x = InceptionD(name="Mixed_7a", **block)(x)
        x = InceptionE(max_pool=False, name="Mixed_7b", **block)(x)
        x = InceptionE(max_pool=True, name="Mixed_7c", **block)(x)
        features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        logits = None
        if self.num_classes is not None:
            logits = Classifier(self.num_classes, self.classifier_bias, self.precision, name="fc")(
                features
            )
        return features, logits


def prepare(model: InceptionV3, params: dict) -> dict:
    """The variables to apply `model` with: `params`, and each block's 1x1 kernels
    concatenated once (collection "prepared"), which every call concatenates otherwise
    (~3% of a CPU batch of 8).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gan_jax.metrics import inception
      >>> model = inception.InceptionV3()
      >>> shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
      >>> params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["params"])
      >>> variables = inception.prepare(model, params)
      >>> variables["prepared"]["Mixed_7c"]["pointwise_kernel"].shape  # 320 + 384 + 448
      (1, 1, 2048, 1152)
    """

    def concatenated(p: dict) -> dict:
        # Only the prepared collection is returned: XLA drops the rest of the network.
        x = jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), model.dtype)
        return model.apply({"params": p}, x, mutable=[PREPARED])[1][PREPARED]

    return {"params": params, PREPARED: jax.jit(concatenated)(params)}


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


def _resolve_stem_batch(stem_batch: int | None) -> int:
    if stem_batch is None:
        return jax.local_device_count() if jax.default_backend() == "cpu" else 0
    return stem_batch


def _in_steps(f: Any, x: jax.Array, step: int) -> jax.Array:
    """f(x) for f acting on each image alone, `step` images at a time (a loop).

    Step j takes images j, j + L, j + 2L, ... (L = N / step), so that with the batch
    axis sharded over `step` devices (or a divisor of it) every step reads every shard.
    """
    n = x.shape[0]
    if not step or step >= n or n % step:
        return f(x)
    steps = n // step
    xs = jnp.swapaxes(x.reshape(step, steps, *x.shape[1:]), 0, 1)
    ys = jax.lax.map(f, xs)
    return jnp.swapaxes(ys, 0, 1).reshape(n, *ys.shape[2:])


# (name, in channels, out channels, kernel, strides, "same" padding) of the stem's layers.
_STEM: Sequence[tuple[str, int, int, tuple[int, int], int, bool]] = (
    ("Conv2d_1a_3x3", 3, 32, (3, 3), 2, False),
    ("Conv2d_2a_3x3", 32, 32, (3, 3), 1, False),
    ("Conv2d_2b_3x3", 32, 64, (3, 3), 1, True),
    ("Conv2d_3b_1x1", 64, 80, (1, 1), 1, True),
    ("Conv2d_4a_3x3", 80, 192, (3, 3), 1, False),
)
_A_BLOCKS: Sequence[tuple[str, int]] = (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64))
_C_BLOCKS: Sequence[tuple[str, int]] = (
    ("Mixed_6b", 128),
    ("Mixed_6c", 160),
    ("Mixed_6d", 160),
    ("Mixed_6e", 192),
)
