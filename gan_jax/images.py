"""Image grids and PNG files."""

from __future__ import annotations

import io
import math
import os

import numpy as np
from PIL import Image


def to_uint8(images_NxHxWxC: np.ndarray) -> np.ndarray:
    """Maps images in [-1, 1] to uint8 [0, 255] (round to nearest)."""
    x = (np.asarray(images_NxHxWxC, np.float32) + 1.0) * 127.5
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def make_grid(images_NxHxWxC: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tiles images in [-1, 1] into one uint8 (rows*H, cols*W, C) grid with `pad` pixels between.

    Example:
      >>> import numpy as np
      >>> make_grid(np.zeros((6, 8, 8, 3)), ncols=3, pad=1).shape
      (17, 26, 3)
    """
    x = to_uint8(images_NxHxWxC)
    n, h, w, c = x.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.zeros((nrows * (h + pad) - pad, ncols * (w + pad) - pad, c), np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = x[i]
    return grid


def png_bytes(grid_HxWxC: np.ndarray) -> bytes:
    """PNG encoding of a uint8 image; deterministic for the same pixels."""
    img = grid_HxWxC[..., 0] if grid_HxWxC.shape[-1] == 1 else grid_HxWxC
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: str, grid_HxWxC: np.ndarray) -> None:
    """Writes a uint8 image as PNG, atomically (a partial file is never left at `path`).

    Missing parent directories are created.

    Example:
      >>> import numpy as np, gan_jax
      >>> from PIL import Image
      >>> grid = gan_jax.make_grid(np.zeros((4, 8, 8, 3)), ncols=2)
      >>> gan_jax.save_png("samples/grid.png", grid)
      >>> with Image.open("samples/grid.png") as image:
      ...     image.size, image.mode
      ((18, 18), 'RGB')
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(png_bytes(grid_HxWxC))
    os.replace(tmp, path)
