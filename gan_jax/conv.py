"""Convolution kernels of the GAN networks, as pure functions of arrays.

Two formulations compute the same functions from the same (kh, kw, in, out)
kernels (`conv_impl`):

* "lax": XLA convolutions on NHWC activations (`conv_lax`,
  `conv_transpose_lax`, `conv_transpose_subpixel`);
* "dot": activations channels-major, (C, H, W, N), and every convolution a
  matrix product with a memory-only rearrangement around it, whose forward and
  backward passes are all row-major matrix products (`conv_dot`, `conv3x3_dot`,
  `conv_transpose_dot`, `project_dot`, `dense_dot`, `logit_dot`). It is several
  times faster on XLA:CPU, whose convolution and weight-gradient kernels are
  slow for these shapes, and it sends bfloat16 products to the CPU's bf16
  matrix units.

The FID Inception (`gan_jax.metrics.inception`, inference only) uses the NHWC
kernels at the end: XLA convolutions arranged the way XLA:CPU runs fastest
(`conv_nhwc`), and 1x1 convolutions as plain matrix products, several that read
the same input as one product (`pointwise_conv`). All of them compute what
`jax.lax.conv_general_dilated` computes, to float32 rounding.

This module imports nothing from gan_jax; the Flax layers that own the kernels
are in `gan_jax.layers`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

CONV_IMPLS = ("auto", "dot", "lax")
NHWC = ("NHWC", "HWIO", "NHWC")


def resolve_conv_impl(conv_impl: str) -> str:
    """ "dot" or "lax" for a `conv_impl` setting ("auto": "dot" on CPU, else "lax")."""
    if conv_impl == "auto":
        return "dot" if jax.default_backend() == "cpu" else "lax"
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {conv_impl!r}; use 'auto', 'dot' or 'lax'.")
    return conv_impl


# ---------------------------------------------------------------- NHWC ("lax")


def conv_lax(x_NxHxWxC: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """An XLA convolution with a (kh, kw, in, out) kernel and symmetric padding (NHWC)."""
    pads = ((padding, padding), (padding, padding))
    return jax.lax.conv_general_dilated(
        x_NxHxWxC, kernel, (stride, stride), pads, dimension_numbers=NHWC
    )


def conv_transpose_lax(
    x_NxHxWxC: jax.Array, kernel: jax.Array, stride: int, padding: int
) -> jax.Array:
    """An XLA transposed convolution (as flax's `ConvTranspose`), lax padding on each side.

    PyTorch's `ConvTranspose2d(padding=p)` is lax padding k - 1 - p; a "valid"
    transposed convolution is lax padding k - 1.
    """
    pads = ((padding, padding), (padding, padding))
    return jax.lax.conv_transpose(
        x_NxHxWxC, kernel, (stride, stride), pads, rhs_dilation=(1, 1), dimension_numbers=NHWC
    )


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


def conv_transpose_subpixel(x_NxHxWxC: jax.Array, kernel: jax.Array) -> jax.Array:
    """The 4x4 stride-2 transposed convolution (PyTorch padding 1) as conv + depth-to-space.

    Output pixel (2i + a, 2j + b) only sees input pixels i-1..i+1 (rows) and
    j-1..j+1 (columns) through the kernel taps of parity (a, b): one 3x3
    convolution with 4x the output channels computes all four parities at once
    and depth-to-space interleaves them. The same function as
    `conv_transpose_lax(x, kernel, 2, 2)`, faster than XLA's transposed convolution.
    The (4, 4, I, O) kernel is rearranged, then cast to x's dtype.
    """
    out = kernel.shape[-1]
    y = conv_lax(x_NxHxWxC, subpixel_kernel(kernel).astype(x_NxHxWxC.dtype), 1, 1)
    n, h, w, _ = y.shape
    y = y.reshape(n, h, w, 2, 2, out)
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, out)


# ---------------------------------------------------------------- channels-major ("dot")
# Activations are (C, H, W, N); each convolution is `matmul(weights, rearranged activations)`.


def to_channels_major(x_NxHxWxC: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (C, H, W, N)."""
    return jnp.transpose(x_NxHxWxC, (3, 1, 2, 0))


def from_channels_major(x_CxHxWxN: jax.Array) -> jax.Array:
    """(C, H, W, N) -> (N, H, W, C)."""
    return jnp.transpose(x_CxHxWxN, (3, 1, 2, 0))


def uses_channels_major(conv_impl: str) -> bool:
    """Whether `conv_impl` ("auto", "dot" or "lax") runs on channels-major activations."""
    return resolve_conv_impl(conv_impl) == "dot"


def channel_axis(channels_major: bool) -> int:
    """The channel axis: 0 of (C, H, W, N), -1 of (N, H, W, C)."""
    return 0 if channels_major else -1


def from_nhwc(x_NxHxWxC: jax.Array, channels_major: bool) -> jax.Array:
    """NHWC activations in the layers' layout."""
    return to_channels_major(x_NxHxWxC) if channels_major else x_NxHxWxC


def to_nhwc(x: jax.Array, channels_major: bool) -> jax.Array:
    """Activations in the layers' layout back to NHWC."""
    return from_channels_major(x) if channels_major else x


def add_bias(x: jax.Array, bias: jax.Array | None, channels_major: bool) -> jax.Array:
    """x + bias over the channel axis, in x's dtype (x itself for no bias)."""
    if bias is None:
        return x
    bias = bias.astype(x.dtype)
    return x + (bias[:, None, None, None] if channels_major else bias[None, None, None, :])


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


def dense_dot(z_NxL: jax.Array, kernel_LxK: jax.Array, height: int, width: int) -> jax.Array:
    """A dense layer whose (N, H*W*C) output is read as NHWC, returned as (C, H, W, N)."""
    latent_dim, k = kernel_LxK.shape
    c = k // (height * width)
    w = kernel_LxK.reshape(latent_dim, height, width, c).transpose(3, 1, 2, 0)
    x = matmul(w.reshape(k, latent_dim), jnp.transpose(z_NxL))
    return x.reshape(c, height, width, z_NxL.shape[0])


def _move(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
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
def patches(x_CxHxWxN: jax.Array) -> jax.Array:
    """Zero-padded (pad 1) 4x4 stride-2 windows: (C, H, W, N) -> (16, C, H/2, W/2, N).

    Tap `4 * ky + kx` holds x[c, 2i + ky - 1, 2j + kx - 1, n]. Its backward pass
    is the hand-written adjoint, a few dense loops instead of XLA's scatter.
    """
    _, h, w, _ = x_CxHxWxN.shape

    def windows(x):
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return _stride2_taps(xp, h // 2, w // 2)

    return _move(windows, x_CxHxWxN)


def _patches_transpose(t: jax.Array) -> jax.Array:
    """The adjoint of `patches`, gathered per output parity so that it is a few dense loops."""
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
    return interleave(jnp.stack(planes))[:, 1:-1, 1:-1]


def interleave(planes: jax.Array) -> jax.Array:
    """Parity planes (4, C, H, W, N), index 2 * py + px, -> (C, 2H, 2W, N)."""

    def interleave_planes(p):
        _, c, h, w, n = p.shape
        y = p.reshape(2, 2, c, h, w, n).transpose(2, 3, 0, 4, 1, 5)
        return y.reshape(c, 2 * h, 2 * w, n)

    return _move(interleave_planes, planes)


patches.defvjp(lambda x: (patches(x), None), lambda _, t: (_patches_transpose(t),))


def conv_dot(x_CxHxWxN: jax.Array, kernel: jax.Array) -> jax.Array:
    """4x4 stride-2 convolution with padding 1 (the discriminator's): -> (O, H/2, W/2, N)."""
    c, h, w, n = x_CxHxWxN.shape
    out = kernel.shape[-1]
    p = patches(x_CxHxWxN).reshape(16 * c, h // 2, w // 2, n)
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
def overlap_add(z: jax.Array) -> jax.Array:
    """Sums per-tap products (4, 4, O, H, W, N) into the upsampled output (O, 2H, 2W, N).

    Tap (ky, kx) of input pixel (i, j) lands on output pixel (2i + 2 - ky, 2j + 2 - kx).
    Its backward pass is the hand-written adjoint (stride-2 windows of the gradient).
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
    return interleave(jnp.stack(planes))


def _overlap_add_transpose(g: jax.Array) -> jax.Array:
    _, h2, w2, _ = g.shape

    def taps(g):
        # Tap (ky, kx) of input pixel (i, j) reads g[2i + 2 - ky, 2j + 2 - kx], i.e. tap
        # (3 - ky, 3 - kx) of the stride-2 windows of g padded by 1.
        gp = jnp.pad(g, ((0, 0), (1, 1), (1, 1), (0, 0)))
        t = _stride2_taps(gp, h2 // 2, w2 // 2)
        return t.reshape(4, 4, *t.shape[1:])[::-1, ::-1]

    return _move(taps, g)


overlap_add.defvjp(lambda z: (overlap_add(z), None), lambda _, g: (_overlap_add_transpose(g),))


def conv_transpose_dot(x_CxHxWxN: jax.Array, kernel: jax.Array) -> jax.Array:
    """The 4x4 stride-2 transposed convolution (PyTorch padding 1), channels-major.

    -> (O, 2H, 2W, N). Each input pixel meets all 16 taps exactly once, so one
    product with the kernel as a (16 O, C) matrix does every multiplication the
    layer needs.
    """
    c, h, w, n = x_CxHxWxN.shape
    out = kernel.shape[-1]
    w_16OxC = kernel.transpose(0, 1, 3, 2).reshape(16 * out, c)
    z = matmul(w_16OxC, x_CxHxWxN)
    return overlap_add(z.reshape(4, 4, out, h, w, n))


def logit_dot(x_CxHxWxN: jax.Array, kernel: jax.Array) -> jax.Array:
    """The discriminator's last (full-size, "valid") convolution to one logit: -> (N,)."""
    c, h, w, n = x_CxHxWxN.shape
    # A matrix-vector product: too small for the matrix kernels, so plain float32.
    w_K = kernel[..., 0].transpose(2, 0, 1).reshape(c * h * w).astype(jnp.float32)
    x_KxN = x_CxHxWxN.reshape(c * h * w, n).astype(jnp.float32)
    return jnp.einsum("k,kn->n", w_K, x_KxN)


# The FID Inception's kernels (NHWC, inference).

Padding = tuple[tuple[int, int], tuple[int, int]]


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
