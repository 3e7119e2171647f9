"""DCGAN generator and discriminator as Flax linen modules (NHWC).

At the default sizes (latent 100, width 64, 32x32x3) these reproduce the classic
DCGAN exactly: the same layers, the same parameter counts, no biases, BatchNorm
with PyTorch's momentum (0.1) and epsilon (1e-5), and DCGAN initialisation.
Every larger power-of-two image size adds one stage, as in pytorch/examples.

Two implementations compute the same functions from the same parameters
(`conv_impl`): "lax" runs XLA convolutions on NHWC activations; "dot" keeps
activations channels-major, (C, H, W, N), and writes every convolution as a
matrix product with a memory-only rearrangement around it, whose forward and
backward passes are all row-major matrix products. "dot" is several times
faster on XLA:CPU, whose convolution and weight-gradient kernels are slow for
these shapes, and it sends bfloat16 products to the CPU's bf16 matrix units.

Two switches extend both networks, in both implementations:

* `num_classes > 0` makes them class-conditional: the generator's BatchNorm
  layers take their scale and shift from per-class tables (categorical
  conditional BatchNorm), and the discriminator is a projection discriminator
  (Miyato & Koyama 2018): logit(x, y) = w^T h(x) + b + embed(y)^T h(x), where h
  are the features that the last layer reads. Both then take `labels` (N,).
* the discriminator's `spectral_norm` divides every weight by its largest
  singular value (`gan_jax.spectral`) and, as in SNGAN, replaces its BatchNorm
  layers by biases.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax import spectral

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


def resolve_conv_impl(conv_impl: str) -> str:
    """ "dot" or "lax" for a `conv_impl` setting ("auto": "dot" on CPU, else "lax")."""
    if conv_impl == "auto":
        return "dot" if jax.default_backend() == "cpu" else "lax"
    if conv_impl not in ("dot", "lax"):
        raise ValueError(f"unknown conv_impl {conv_impl!r}; use 'auto', 'dot' or 'lax'.")
    return conv_impl


def _batch_norm(axis_name: str | None, dtype: Any, name: str, axis: int = -1) -> nn.BatchNorm:
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


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (categorical conditional BN).

    The statistics are those of `_batch_norm` (submodule `norm`); the parameters
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


def _norm(
    num_classes: int,
    axis_name: str | None,
    dtype: Any,
    name: str,
    x: jax.Array,
    labels: jax.Array | None,
    train: bool,
    axis: int = -1,
) -> jax.Array:
    """The generator's BatchNorm: conditional when the model has classes."""
    if num_classes:
        return ConditionalBatchNorm(num_classes, axis, axis_name, dtype, name=name)(
            x, labels, use_running_average=not train
        )
    return _batch_norm(axis_name, dtype, name, axis=axis)(x, use_running_average=not train)


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
        kernel = self.param("kernel", conv_init, self.shape, jnp.float32)
        if self.spectral_norm:
            kernel = spectral.normalize(self, kernel, update_sn)
        bias = None
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.shape[-1],), jnp.float32)
        return kernel, bias


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


def conv_lax(x_NxHxWxC: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """An XLA convolution with a (kh, kw, in, out) kernel and symmetric padding (NHWC)."""
    pads = ((padding, padding), (padding, padding))
    return jax.lax.conv_general_dilated(
        x_NxHxWxC, kernel, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _add_bias(x: jax.Array, bias: jax.Array | None, channels_major: bool) -> jax.Array:
    if bias is None:
        return x
    bias = bias.astype(x.dtype)
    return x + (bias[:, None, None, None] if channels_major else bias[None, None, None, :])


class Generator(nn.Module):
    """Maps latent vectors (N, latent_dim) to images (N, S, S, channels) in [-1, 1].

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
        the module docstring.
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
        check_labels(self.num_classes, labels, "generator")
        if resolve_conv_impl(self.conv_impl) == "dot":
            return self._call_dot(z_NxL, train, labels)
        n = num_stages(self.image_size)
        widths = [self.width * 2 ** (n - 1 - i) for i in range(n)]
        x = z_NxL.astype(self.dtype)[:, None, None, :]
        # Project 1x1 -> 4x4 (a 4x4 "valid" transposed convolution).
        x = nn.ConvTranspose(
            widths[0],
            (4, 4),
            padding="VALID",
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            name="project",
        )(x)
        x = self._norm("bn0", x, labels, train)
        x = nn.relu(x)
        for i, features in enumerate(widths[1:] + [self.channels]):
            x = upsample_conv(features, self.subpixel, self.dtype, name=f"up{i + 1}")(x)
            if i + 1 < n:
                x = self._norm(f"bn{i + 1}", x, labels, train)
                x = nn.relu(x)
        return jnp.tanh(x.astype(jnp.float32))

    def _norm(self, name: str, x: jax.Array, labels: Any, train: bool, axis: int = -1):
        return _norm(self.num_classes, self.axis_name, self.dtype, name, x, labels, train, axis)

    def _call_dot(self, z_NxL: jax.Array, train: bool, labels: jax.Array | None) -> jax.Array:
        n = num_stages(self.image_size)
        widths = [self.width * 2 ** (n - 1 - i) for i in range(n)]
        latent_dim = z_NxL.shape[-1]
        kernel = _Kernel((4, 4, latent_dim, widths[0]), name="project")()
        x = project_dot(z_NxL.astype(self.dtype), kernel.astype(self.dtype))
        x = self._norm("bn0", x, labels, train, axis=0)
        x = nn.relu(x)
        for i, features in enumerate(widths[1:] + [self.channels]):
            kernel = _UpKernel((4, 4, x.shape[0], features), name=f"up{i + 1}")()
            x = conv_transpose_dot(x, kernel.astype(self.dtype))
            if i + 1 < n:
                x = self._norm(f"bn{i + 1}", x, labels, train, axis=0)
                x = nn.relu(x)
        return from_channels_major(jnp.tanh(x.astype(jnp.float32)))


class Discriminator(nn.Module):
    """Maps images (N, S, S, C) to real/fake logits (N,); no sigmoid inside.

    Attributes are as in `Generator`; `width` is the first stage's channels.
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
        """Logits (N,) of images (N, S, S, C).

        `labels` (N,) are required by a conditional discriminator (num_classes > 0).
        `update_sn` (default: `train`) runs one power iteration of the spectral
        norm estimates and stores it; `train_step` sets it on one pass per step.
        """
        check_labels(self.num_classes, labels, "discriminator")
        update_sn = train if update_sn is None else update_sn
        dot = resolve_conv_impl(self.conv_impl) == "dot"
        n = num_stages(self.image_size)
        x = x_NxSxSxC.astype(self.dtype)
        if dot:
            x = to_channels_major(x)
        for i in range(n):
            x = self._down(i, x, dot, update_sn)
            if i > 0 and not self.spectral_norm:
                x = _batch_norm(self.axis_name, self.dtype, f"bn{i}", axis=0 if dot else -1)(
                    x, use_running_average=not train
                )
            x = nn.leaky_relu(x, 0.2)
        return logit_layer(
            x,
            labels,
            update_sn,
            num_classes=self.num_classes,
            spectral_norm=self.spectral_norm,
            use_bias=self.spectral_norm,
            dtype=self.dtype,
            channels_major=dot,
        )

    def _down(self, i: int, x: jax.Array, dot: bool, update_sn: bool) -> jax.Array:
        """The stride-2 4x4 convolution of stage i (with a bias under spectral norm)."""
        shape = (4, 4, x.shape[0] if dot else x.shape[-1], self.width * 2**i)
        if self.spectral_norm:
            kernel, bias = Weight(shape, use_bias=True, spectral_norm=True, name=f"down{i}")(
                update_sn
            )
            kernel = kernel.astype(self.dtype)
            y = conv_dot(x, kernel) if dot else conv_lax(x, kernel, 2, 1)
            return _add_bias(y, bias, dot)
        if dot:
            return conv_dot(x, _Kernel(shape, name=f"down{i}")().astype(self.dtype))
        return nn.Conv(
            shape[-1],
            (4, 4),
            strides=(2, 2),
            padding=((1, 1), (1, 1)),
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            name=f"down{i}",
        )(x)


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


class UpsampleConvTranspose(nn.Module):
    """A 4x4 stride-2 transposed convolution with PyTorch's padding=1 (doubles H and W)."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # PyTorch padding p corresponds to lax padding k - 1 - p = 2 on each side.
        return nn.ConvTranspose(
            self.features,
            (4, 4),
            strides=(2, 2),
            padding=((2, 2), (2, 2)),
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            name="conv",
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
            x.astype(self.dtype),
            w,
            (1, 1),
            ((1, 1), (1, 1)),
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


# Channels-major implementation ("dot"). Activations are (C, H, W, N); each
# convolution is `matmul(weights, rearranged activations)`.


class _Kernel(nn.Module):
    """A bare convolution kernel, named and initialised like flax's Conv/ConvTranspose kernel."""

    shape: tuple[int, ...]

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("kernel", conv_init, self.shape, jnp.float32)


class _UpKernel(nn.Module):
    """The kernel of `UpsampleConvTranspose` (same parameter path: <name>/conv/kernel)."""

    shape: tuple[int, ...]

    @nn.compact
    def __call__(self) -> jax.Array:
        return _Kernel(self.shape, name="conv")()


def to_channels_major(x_NxHxWxC: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (C, H, W, N)."""
    return jnp.transpose(x_NxHxWxC, (3, 1, 2, 0))


def from_channels_major(x_CxHxWxN: jax.Array) -> jax.Array:
    """(C, H, W, N) -> (N, H, W, C)."""
    return jnp.transpose(x_CxHxWxN, (3, 1, 2, 0))


def _materialised_transpose(x: jax.Array) -> jax.Array:
    # The barrier stops XLA from folding the transpose into the dot's dimension
    # numbers: XLA:CPU's fast matrix kernels take row-major (M, K) x (K, N) only.
    return jax.lax.optimization_barrier(jnp.transpose(x))


def _contract(a: jax.Array, b: jax.Array, n: int, out_sharding: Any = None) -> jax.Array:
    """Contracts the last `n` axes of `a` with the first `n` of `b` (float32 accumulation)."""
    dims = (tuple(range(a.ndim - n, a.ndim)), tuple(range(n)))
    return jax.lax.dot_general(
        a, b, (dims, ((), ())), preferred_element_type=jnp.float32, out_sharding=out_sharding
    )


def _replicated_like(x: jax.Array) -> Any:
    """Output sharding for a product that contracts `x`'s (possibly sharded) batch axis."""
    mesh = jax.typeof(x).sharding.mesh
    return None if mesh.empty else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


@jax.custom_vjp
def matmul(w_PxQ: jax.Array, x_Qx___: jax.Array) -> jax.Array:
    """w @ x over x's first axis, (P, Q) x (Q, ...) -> (P, ...), in x's dtype.

    Products accumulate in float32. All three products of the forward and
    backward pass are row-major (M, K) x (K, N): the weight gradient, which
    contracts the long axes, transposes the smaller of its two operands first
    instead of leaving XLA a column-major product, which XLA:CPU runs on a slow
    path (and in float32 for bfloat16 inputs).
    """
    return _contract(jax.lax.optimization_barrier(w_PxQ), x_Qx___, 1).astype(x_Qx___.dtype)


def _matmul_fwd(w, x):
    return matmul(w, x), (w, x)


def _matmul_bwd(res, g):
    w, x = res
    g = g.astype(x.dtype)
    rest = x.ndim - 1
    dx = _contract(_materialised_transpose(w), g, 1).astype(x.dtype)
    out = _replicated_like(x)
    # The barriers after the products keep XLA from producing them in the layout
    # their consumers prefer, which it does by swapping the operands into a
    # column-major product.
    if g.shape[0] <= x.shape[0]:
        g_t = jax.lax.optimization_barrier(jnp.moveaxis(g, 0, -1))
        dw = jnp.transpose(jax.lax.optimization_barrier(_contract(x, g_t, rest, out)))
    else:
        x_t = jax.lax.optimization_barrier(jnp.moveaxis(x, 0, -1))
        dw = jax.lax.optimization_barrier(_contract(g, x_t, rest, out))
    return dw.astype(w.dtype), dx


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def project_dot(z_NxL: jax.Array, kernel: jax.Array) -> jax.Array:
    """The generator's 1x1 -> 4x4 "valid" transposed convolution: (N, L) -> (O, 4, 4, N)."""
    kh, kw, latent_dim, out = kernel.shape
    # A transposed convolution of a single pixel is the kernel flipped in space.
    w = kernel[::-1, ::-1].transpose(3, 0, 1, 2).reshape(out * kh * kw, latent_dim)
    return matmul(w, jnp.transpose(z_NxL)).reshape(out, kh, kw, z_NxL.shape[0])


def _move(f: Any, x: jax.Array) -> jax.Array:
    """Applies `f`, which only moves whole batch vectors (last axis), to x.

    bfloat16 data moves as 32-bit words (two batch entries each): XLA:CPU copies,
    slices and concatenates 16-bit elements several times slower than 32-bit ones.
    """
    n = x.shape[-1]
    mesh = jax.typeof(x).sharding.mesh
    shards = 1 if mesh.empty else math.prod(mesh.axis_sizes)
    if x.dtype != jnp.bfloat16 or n % (2 * shards):
        return f(x)
    words = jax.lax.bitcast_convert_type(x.reshape(*x.shape[:-1], n // 2, 2), jnp.uint32)
    y = f(words)
    return jax.lax.bitcast_convert_type(y, x.dtype).reshape(*y.shape[:-1], 2 * y.shape[-1])


def _stride2_taps(xp: jax.Array, ho: int, wo: int) -> jax.Array:
    """(C, 2A, 2B, N) -> (16, C, ho, wo, N); tap 4 * ky + kx holds xp[:, 2i + ky, 2j + kx].

    Split into parity planes first, every tap is a contiguous slice of one plane:
    XLA:CPU copies those a few times faster than stride-2 slices.
    """
    c, h2, w2, n = xp.shape
    planes = xp.reshape(c, h2 // 2, 2, w2 // 2, 2, n).transpose(2, 4, 0, 1, 3, 5)
    taps = jnp.stack(
        [planes[:, :, :, dy : dy + ho, dx : dx + wo] for dy in (0, 1) for dx in (0, 1)]
    )
    # (dy, dx, py, px) -> (dy, py, dx, px), i.e. (ky, kx) with ky = 2 dy + py.
    taps = taps.reshape(2, 2, 2, 2, c, ho, wo, n).transpose(0, 2, 1, 3, 4, 5, 6, 7)
    return taps.reshape(16, c, ho, wo, n)


@jax.custom_vjp
def _patches(x_CxHxWxN: jax.Array) -> jax.Array:
    """Zero-padded (pad 1) 4x4 stride-2 windows: (C, H, W, N) -> (16, C, H/2, W/2, N).

    Tap `4 * ky + kx` holds x[c, 2i + ky - 1, 2j + kx - 1, n].
    """
    _, h, w, _ = x_CxHxWxN.shape

    def windows(x):
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return _stride2_taps(xp, h // 2, w // 2)

    return _move(windows, x_CxHxWxN)


def _patches_transpose(t: jax.Array) -> jax.Array:
    """The adjoint of `_patches`, gathered per output parity so that it is a few dense loops."""
    _, c, ho, wo, n = t.shape
    # Padded pixel (2i + py, 2j + px) is tap (2dy + py, 2dx + px) of window (i - dy, j - dx).
    tp = jnp.pad(t, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
    planes = []
    for py in (0, 1):
        for px in (0, 1):
            terms = [
                tp[4 * (2 * dy + py) + 2 * dx + px, :, 1 - dy : 2 - dy + ho, 1 - dx : 2 - dx + wo]
                for dy in (0, 1)
                for dx in (0, 1)
            ]
            planes.append(sum(terms[1:], terms[0]))
    return _interleave(jnp.stack(planes))[:, 1:-1, 1:-1]


def _interleave(planes: jax.Array) -> jax.Array:
    """Parity planes (4, C, H, W, N), index 2 * py + px, -> (C, 2H, 2W, N)."""

    def interleave(p):
        _, c, h, w, n = p.shape
        y = p.reshape(2, 2, c, h, w, n).transpose(2, 3, 0, 4, 1, 5)
        return y.reshape(c, 2 * h, 2 * w, n)

    return _move(interleave, planes)


_patches.defvjp(lambda x: (_patches(x), None), lambda _, t: (_patches_transpose(t),))


def conv_dot(x_CxHxWxN: jax.Array, kernel: jax.Array) -> jax.Array:
    """4x4 stride-2 convolution with padding 1 (the discriminator's): -> (O, H/2, W/2, N)."""
    c, h, w, n = x_CxHxWxN.shape
    out = kernel.shape[-1]
    p = _patches(x_CxHxWxN).reshape(16 * c, h // 2, w // 2, n)
    return matmul(_materialised_transpose(kernel.reshape(16 * c, out)), p)


def conv3x3_dot(x_CxHxWxN: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3 stride-1 convolution with padding 1 on channels-major activations: -> (O, H, W, N).

    `kernel` is (3, 3, C, O), as `conv_lax` takes it.
    """
    c, h, w, n = x_CxHxWxN.shape
    out = kernel.shape[-1]

    def windows(x):
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return jnp.stack([xp[:, ky : ky + h, kx : kx + w] for ky in range(3) for kx in range(3)])

    p = windows(x_CxHxWxN).reshape(9 * c, h, w, n)
    return matmul(_materialised_transpose(kernel.reshape(9 * c, out)), p)


# Output row 2r + a of the stride-2 transposed convolution (PyTorch padding 1)
# sums kernel row ky applied to input row r + d, for (ky, d) in _TAPS[a].
_TAPS = {0: ((0, -1), (2, 0)), 1: ((1, 0), (3, 1))}


@jax.custom_vjp
def _overlap_add(z: jax.Array) -> jax.Array:
    """Sums per-tap products (4, 4, O, H, W, N) into the upsampled output (O, 2H, 2W, N).

    Tap (ky, kx) of input pixel (i, j) lands on output pixel (2i + 2 - ky, 2j + 2 - kx).
    """
    _, _, o, h, w, n = z.shape
    zp = jnp.pad(z, ((0, 0), (0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
    planes = []
    for a in (0, 1):
        for b in (0, 1):
            terms = [
                zp[ky, kx, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                for ky, dy in _TAPS[a]
                for kx, dx in _TAPS[b]
            ]
            planes.append(sum(terms[1:], terms[0]))
    return _interleave(jnp.stack(planes))


def _overlap_add_transpose(g: jax.Array) -> jax.Array:
    _, h2, w2, _ = g.shape

    def taps(g):
        # Tap (ky, kx) of input pixel (i, j) reads g[2i + 2 - ky, 2j + 2 - kx], i.e. tap
        # (3 - ky, 3 - kx) of the stride-2 windows of g padded by 1.
        gp = jnp.pad(g, ((0, 0), (1, 1), (1, 1), (0, 0)))
        t = _stride2_taps(gp, h2 // 2, w2 // 2)
        return t.reshape(4, 4, *t.shape[1:])[::-1, ::-1]

    return _move(taps, g)


_overlap_add.defvjp(lambda z: (_overlap_add(z), None), lambda _, g: (_overlap_add_transpose(g),))


def conv_transpose_dot(x_CxHxWxN: jax.Array, kernel: jax.Array) -> jax.Array:
    """`UpsampleConvTranspose` on channels-major activations: -> (O, 2H, 2W, N).

    Each input pixel meets all 16 taps exactly once, so one product with the
    kernel as a (16 O, C) matrix does every multiplication the layer needs.
    """
    c, h, w, n = x_CxHxWxN.shape
    out = kernel.shape[-1]
    w_16OxC = kernel.transpose(0, 1, 3, 2).reshape(16 * out, c)
    z = matmul(w_16OxC, x_CxHxWxN)
    return _overlap_add(z.reshape(4, 4, out, h, w, n))


def logit_dot(x_CxHxWxN: jax.Array, kernel: jax.Array) -> jax.Array:
    """The discriminator's last (full-size, "valid") convolution to one logit: -> (N,)."""
    c, h, w, n = x_CxHxWxN.shape
    # A matrix-vector product: too small for the matrix kernels, so plain float32.
    w_K = kernel[..., 0].transpose(2, 0, 1).reshape(c * h * w).astype(jnp.float32)
    x_KxN = x_CxHxWxN.reshape(c * h * w, n).astype(jnp.float32)
    return jnp.einsum("k,kn->n", w_K, x_KxN)
