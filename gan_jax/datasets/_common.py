"""What the dataset builders share: the error type and image encoding."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from gan_jax.errors import GanJaxError


class DataError(GanJaxError, ValueError):
    """A data problem, with a one-line message naming the problem and the fix."""

    def __init__(self, message: str):
        super().__init__(message)
        # tfds may prefix the message of errors raised while preparing; keep the original.
        self.message = message


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def encode_png(image: np.ndarray) -> bytes:
    """Encodes a uint8 (H, W, 1 or 3) array as PNG bytes.

    A minimal encoder (no row filters, fast zlib level): on MNIST-sized images it
    takes about half the time of PIL, and less than tfds's TensorFlow encoder,
    which matters when preparing 70,000 of them.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected a uint8 (H, W, 1|3) array, got {image.dtype} {image.shape}")
    height, width, channels = image.shape
    rows = np.zeros((height, 1 + width * channels), np.uint8)  # Filter byte 0 on each row.
    rows[:, 1:] = image.reshape(height, width * channels)
    color_type = 0 if channels == 1 else 2
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
            _chunk(b"IEND", b""),
        )
    )
