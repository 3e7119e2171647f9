"""tfds builders of gan_jax (importing this package registers them with tfds).

* `gan_jax_digits`: scikit-learn's bundled 8x8 digits, no download.
* `gan_jax_folder`: a folder of the user's own images.
* `gan_jax_mnist`, `gan_jax_fashion_mnist`, `gan_jax_cifar10`: prepared offline from
  the original archive files in a local folder (tfds's `manual_dir`).
"""

from gan_jax.datasets._common import DataError, encode_png
from gan_jax.datasets.archives import Cifar10Archive, FashionMnistArchive, MnistArchive
from gan_jax.datasets.digits import Digits
from gan_jax.datasets.folder import FolderConfig, ImageFolder, folder_config, list_images

# Builders of the datasets that can be prepared from `config.archive_dir`, by tfds name.
ARCHIVE_BUILDERS = {
    "mnist": MnistArchive,
    "fashion_mnist": FashionMnistArchive,
    "cifar10": Cifar10Archive,
}

__all__ = [
    "ARCHIVE_BUILDERS",
    "Cifar10Archive",
    "DataError",
    "Digits",
    "FashionMnistArchive",
    "FolderConfig",
    "ImageFolder",
    "MnistArchive",
    "encode_png",
    "folder_config",
    "list_images",
]
