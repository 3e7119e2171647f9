"""MNIST, Fashion-MNIST and CIFAR-10 prepared offline from their original archive files.

tfds's own builders check the archives against the checksums they registered, so
they reject copies that are the same data but not the same bytes (Debian's
`dataset-fashion-mnist` gzips differ, for instance). These builders read the files
from `manual_dir` (`--config.archive_dir`) and check what they read instead: magic
numbers, image shapes, example counts and label ranges. The features are those of
tfds's builders (`image`, `label`).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from gan_jax.datasets._common import DataError, encode_png

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions.
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension.


def _find(directory: str, names: tuple[str, ...], what: str) -> str:
    for name in names:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise DataError(
        f"no {' or '.join(names)} in {directory}: put the original {what} files there "
        "or fix --config.archive_dir"
    )


def _read_maybe_gzipped(path: str) -> bytes:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e}): replace it with an intact copy") from e


def read_idx(path: str, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) holding a uint8 array of `shape`."""
    data = _read_maybe_gzipped(path)
    ndim = len(shape)
    header_size = 4 + 4 * ndim
    if len(data) < header_size or int.from_bytes(data[:4], "big") != magic:
        raise DataError(
            f"{path} is not an IDX file of {ndim}-d unsigned bytes (wrong magic number): "
            "replace it with the original file"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims != shape or len(data) != header_size + int(np.prod(shape)):
        raise DataError(
            f"{path} holds shape {dims} in {len(data) - header_size} bytes, expected {shape}: "
            "replace it with the original file"
        )
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape)


def _check_labels(labels: np.ndarray, num_classes: int, source: str) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        raise DataError(
            f"{source} has label {int(labels.max())} outside 0..{num_classes - 1}: "
            "replace it with the original file"
        )


class _IdxArchive(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """MNIST-format archives: `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    SPLIT_SIZES = {"train": 60_000, "test": 10_000}
    CLASS_NAMES: tuple[str, ...] = tuple(str(i) for i in range(10))
    DESCRIPTION = ""
    HOMEPAGE = ""

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(names=list(self.CLASS_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        directory = os.fspath(dl_manager.manual_dir)
        generators = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            n = self.SPLIT_SIZES[split]
            stems = {kind: f"{prefix}-{kind}-ubyte" for kind in ("images-idx3", "labels-idx1")}
            paths = {
                kind: _find(directory, (f"{stem}.gz", stem), self.name)
                for kind, stem in stems.items()
            }
            images = read_idx(paths["images-idx3"], _IDX_IMAGES_MAGIC, (n, 28, 28))
            labels = read_idx(paths["labels-idx1"], _IDX_LABELS_MAGIC, (n,))
            _check_labels(labels, len(self.CLASS_NAMES), paths["labels-idx1"])
            generators[split] = self._generate_examples(images[..., None], labels)
        return generators

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray) -> Iterator:
        for i in range(len(images)):
            yield i, {"image": encode_png(images[i]), "label": int(labels[i])}


class MnistArchive(_IdxArchive):
    """MNIST from `train-images-idx3-ubyte.gz` & co. in `manual_dir`."""

    name = "gan_jax_mnist"
    DESCRIPTION = "MNIST handwritten digits (28x28 grayscale), read from the original IDX files."
    HOMEPAGE = "https://yann.lecun.com/exdb/mnist/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (gzipped or not) "
        "in the manual directory (--config.archive_dir)."
    )


class FashionMnistArchive(_IdxArchive):
    """Fashion-MNIST from its IDX files in `manual_dir` (e.g. Debian's dataset-fashion-mnist)."""

    name = "gan_jax_fashion_mnist"
    CLASS_NAMES = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    DESCRIPTION = "Fashion-MNIST: Zalando article images (28x28 grayscale), from the IDX files."
    HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the Fashion-MNIST files train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz in the manual directory (--config.archive_dir); "
        "on Debian/Ubuntu `apt install dataset-fashion-mnist` puts them in "
        "/usr/share/datasets/fashion-mnist/."
    )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: a pickle can run code."""

    _ALLOWED = {
        ("_codecs", "encode"),  # Bytes, as Python 3 writes them with protocol 2.
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        return super().find_class(module, name)


_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _cifar_batch_reader(directory: str) -> Callable[[str], tuple[str, bytes]]:
    """A function giving (source, bytes) of a CIFAR-10 batch file, from a folder or the archive."""
    folders = [os.path.join(directory, _CIFAR_DIR), directory]
    folder = next((f for f in folders if os.path.exists(os.path.join(f, "data_batch_1"))), None)
    if folder is not None:

        def read_file(name: str) -> tuple[str, bytes]:
            path = os.path.join(folder, name)
            return path, _read_maybe_gzipped(path)

        return read_file
    archive = os.path.join(directory, "cifar-10-python.tar.gz")
    if not os.path.exists(archive):
        raise DataError(
            f"no cifar-10-python.tar.gz or {_CIFAR_DIR}/ in {directory}: put the original "
            "CIFAR-10 python archive there or fix --config.archive_dir"
        )
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {
                os.path.basename(m.name): tar.extractfile(m).read()
                for m in tar.getmembers()
                if m.isfile() and os.path.dirname(m.name) == _CIFAR_DIR
            }
    except (OSError, tarfile.TarError, EOFError) as e:
        raise DataError(f"cannot read {archive} ({e}): replace it with an intact copy") from e

    def read_member(name: str) -> tuple[str, bytes]:
        if name not in members:
            raise DataError(
                f"{archive} has no {_CIFAR_DIR}/{name}: replace it with the original archive"
            )
        return f"{archive}:{_CIFAR_DIR}/{name}", members[name]

    return read_member


def read_cifar_batch(source: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8, labels (N,)) of one CIFAR-10 python batch's bytes."""
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
        images = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"])
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise DataError(
            f"{source} is not a CIFAR-10 python batch ({type(e).__name__}: {e}): "
            "replace it with the original file"
        ) from e
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{source} holds {images.dtype} images of shape {images.shape}, expected "
            "(N, 3072) uint8: replace it with the original file"
        )
    if labels.shape != (len(images),):
        raise DataError(
            f"{source} has {labels.shape} labels for {len(images)} images: "
            "replace it with the original file"
        )
    _check_labels(labels, 10, source)
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


class Cifar10Archive(tfds.core.GeneratorBasedBuilder):
    """CIFAR-10 from `cifar-10-python.tar.gz` (or its extracted folder) in `manual_dir`."""

    name = "gan_jax_cifar10"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    SPLIT_SIZES = {"train": 50_000, "test": 10_000}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put cifar-10-python.tar.gz, or the cifar-10-batches-py/ folder extracted from "
        "it, in the manual directory (--config.archive_dir)."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        names = ["airplane", "automobile", "bird", "cat", "deer"]
        names += ["dog", "frog", "horse", "ship", "truck"]
        return tfds.core.DatasetInfo(
            builder=self,
            description="CIFAR-10 (32x32 RGB, 10 classes), read from the original python archive.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(32, 32, 3)),
                    "label": tfds.features.ClassLabel(names=names),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        read = _cifar_batch_reader(os.fspath(dl_manager.manual_dir))
        generators = {}
        for split, names in _CIFAR_BATCHES.items():
            parts = [read_cifar_batch(*read(name)) for name in names]
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            if len(images) != self.SPLIT_SIZES[split]:
                raise DataError(
                    f"CIFAR-10 {split} split has {len(images)} images, expected "
                    f"{self.SPLIT_SIZES[split]}: replace the archive with the original one"
                )
            generators[split] = self._generate_examples(images, labels)
        return generators

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray) -> Iterator:
        for i in range(len(images)):
            yield i, {"image": encode_png(np.ascontiguousarray(images[i])), "label": int(labels[i])}
