"""Turning library images into the FID Inception's input: [0, 255], resize to 299, (x - 128) / 128.

The resize is part of the metric: the same images resized two ways give FIDs that differ
by more than many published improvements. Two bilinear conventions are offered:

* "tf1" (default): TensorFlow 1's `tf.image.resize_bilinear` (`align_corners=False`,
  `half_pixel_centers=False`): output pixel i samples input `i * in / out`, clamped at
  the last pixel. This is what the original TensorFlow FID code (TTUR) and StyleGAN2-ADA
  feed the network, so scores compare with theirs.
* "pytorch": pytorch-fid's `F.interpolate(mode="bilinear", align_corners=False)`:
  half-pixel centres, output pixel i samples `(i + 0.5) * in / out - 0.5`, clamped to
  [0, in - 1]. Equals `jax.image.resize(..., "bilinear")` when upsampling.

Neither antialiases, as in the references. Both are separable, so the resize is two
small matrix products with precomputed (out, in) interpolation matrices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.metrics.inception import INPUT_SIZE

RESIZE_MODES = ("tf1", "pytorch")


def check_resize_mode(mode: str) -> str:
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; use one of {RESIZE_MODES}.")
    return mode


def resize_matrix(in_size: int, out_size: int, mode: str = "tf1") -> np.ndarray:
    """(out_size, in_size) float64 matrix M with resized = M @ signal, for one axis."""
    check_resize_mode(mode)
    # Source coordinates in float32, as both references compute them: at 300-pixel
    # coordinates float64 ones would move the weights by ~1e-5, i.e. ~0.005 grey levels.
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    dst = np.arange(out_size, dtype=f32)
    if mode == "tf1":
        src = dst * scale
    else:
        src = np.maximum((dst + f32(0.5)) * scale - f32(0.5), f32(0.0))
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = (src - lo.astype(f32)).astype(np.float64)
    m = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def resize_bilinear(
    images_NxHxWxC: jax.Array, size: int = INPUT_SIZE, mode: str = "tf1"
) -> jax.Array:
    """Bilinear resize of NHWC float images to (size, size) with the chosen convention.

    Example:
      >>> import jax.numpy as jnp
      >>> from gan_jax import metrics
      >>> image = jnp.array([[0.0, 1.0], [0.0, 1.0]])[None, :, :, None]  # (1, 2, 2, 1)
      >>> metrics.resize_bilinear(image, 4, "tf1")[0, 0, :, 0].tolist()
      [0.0, 0.5, 1.0, 1.0]
      >>> metrics.resize_bilinear(image, 4, "pytorch")[0, 0, :, 0].tolist()
      [0.0, 0.25, 0.75, 1.0]
    """
    _, h, w, _ = images_NxHxWxC.shape
    if (h, w) == (size, size):
        return images_NxHxWxC
    rh = jnp.asarray(resize_matrix(h, size, mode), jnp.float32)
    rw = jnp.asarray(resize_matrix(w, size, mode), jnp.float32)
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", rh, images_NxHxWxC, precision=hp)
    return jnp.einsum("pw,nowc->nopc", rw, x, precision=hp)


def to_uint8_range(images: jax.Array, quantize: bool = True) -> jax.Array:
    """[-1, 1] floats (or uint8) -> float32 in [0, 255].

    With `quantize`, floats are rounded to integers as when saving them as 8-bit images
    (`floor(127.5 x + 128)`, as StyleGAN2-ADA does for generated images), so real and
    generated images pass through the same quantisation.
    """
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32)
    x = images.astype(jnp.float32) * 127.5 + 127.5
    if quantize:
        x = jnp.floor(x + 0.5)
    return jnp.clip(x, 0.0, 255.0)


def to_inception_input(
    images_NxHxWxC: jax.Array, resize_mode: str = "tf1", quantize: bool = True
) -> jax.Array:
    """Library images -> the network's (N, 299, 299, 3) input in [-1, 1).

    Images are NHWC, [-1, 1] floats or uint8 [0, 255], with 1 (replicated) or 3 channels.

    Example:
      >>> import jax.numpy as jnp
      >>> from gan_jax import metrics
      >>> x = metrics.to_inception_input(jnp.ones((2, 32, 32, 1)))  # white, grayscale
      >>> x.shape, round(float(x.min()), 4), round(float(x.max()), 4)  # (255 - 128) / 128
      ((2, 299, 299, 3), 0.9922, 0.9922)
      >>> float(metrics.to_inception_input(jnp.zeros((1, 8, 8, 3), jnp.uint8)).max())  # black
      -1.0
    """
    if images_NxHxWxC.ndim != 4 or images_NxHxWxC.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must be NHWC with 1 or 3 channels, got shape {images_NxHxWxC.shape}; "
            "pass (N, H, W, C) batches."
        )
    x = to_uint8_range(images_NxHxWxC, quantize)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = resize_bilinear(x, INPUT_SIZE, resize_mode)
    return (x - 128.0) / 128.0


def check_value_range(images: np.ndarray) -> None:
    """Raises on float images outside [-1, 1] (e.g. [0, 255] floats), which would score garbage."""
    if images.dtype == np.uint8 or not np.issubdtype(images.dtype, np.floating):
        return
    lo, hi = float(np.min(images)), float(np.max(images))
    if lo < -1.01 or hi > 1.01:
        raise ValueError(
            f"float images must be in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]; pass uint8 "
            "[0, 255] images as uint8 or scale floats to [-1, 1] (x / 127.5 - 1)."
        )
