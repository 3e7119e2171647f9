"""`gan_jax_digits`: scikit-learn's bundled 8x8 handwritten digits as a tfds dataset."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from gan_jax.datasets._common import encode_png


class Digits(tfds.core.GeneratorBasedBuilder):
    """The 1,797 8x8 grayscale digits of `sklearn.datasets.load_digits`, one `train` split.

    Why this dataset: it is real handwriting (43 writers, from the UCI "optical
    recognition of handwritten digits" set), it ships inside scikit-learn, so it
    prepares in well under a second with no network and no archive, and it is small
    enough for tests and smoke runs. The original intensities 0..16 are scaled to
    0..255; the input pipeline upscales the images to `config.image_size`.
    """

    name = "gan_jax_digits"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "scikit-learn's 1,797 real 8x8 handwritten digits (intensities 0..16 "
                "scaled to 0..255), bundled with scikit-learn: no download."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download.
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        return {"train": self._generate_examples(images, digits.target)}

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield i, {"image": encode_png(image), "label": int(label)}
