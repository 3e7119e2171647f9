"""Encoded dataset images to training images, as TensorFlow functions for `tf.data`.

An image is decoded, centre-cropped to a square if it is not square, resized to the
training `size` (only when the size differs; antialiased only when shrinking),
converted to `channels` and scaled from uint8 to float32 [-1, 1]. The input
pipeline maps this over its stream; training and evaluation see the same images.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

__all__ = ["training_image_fn"]


def training_image_fn(
    source_shape: tuple[int | None, ...], size: int, channels: int
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Encoded image -> float32 (size, size, channels) in [-1, 1]."""
    source_channels = 1 if source_shape[-1] == 1 else 3
    height, width = source_shape[0], source_shape[1]
    square = height is not None and height == width
    side = min(height, width) if height is not None and width is not None else None

    def preprocess(encoded: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=source_channels, expand_animations=False)
        image = tf.cast(image, tf.float32)
        if not square:  # Centre crop to a square.
            shape = tf.shape(image)
            crop = tf.minimum(shape[0], shape[1])
            image = tf.image.crop_to_bounding_box(
                image, (shape[0] - crop) // 2, (shape[1] - crop) // 2, crop, crop
            )
        if source_channels == 3 and channels == 1:
            image = tf.image.rgb_to_grayscale(image)
        if side != size:
            # Antialiasing only matters when shrinking, and it is slow: skip it when growing.
            shrink = side is None or side > size
            image = tf.image.resize(image, (size, size), method="bilinear", antialias=shrink)
        if source_channels == 1 and channels == 3:
            image = tf.tile(image, (1, 1, 3))
        image = tf.ensure_shape(image, (size, size, channels))
        return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)

    return preprocess
