"""The tfds builders: digits, image folders and the offline archive builders."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from gan_jax import datasets, input_pipeline
from gan_jax.config import default_config
from gan_jax.datasets import folder as folder_lib
from gan_jax.input_pipeline import DataError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _quiet():
    tfds.disable_progress_bar()


def _config(data_dir, **overrides):
    config = default_config()
    config.data_dir = str(data_dir)
    config.update(overrides)
    return config


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (5, 7, 3), (1, 1, 1)])
def test_encode_png_round_trip(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    encoded = datasets.encode_png(image)
    decoded_pil = np.asarray(Image.open(io.BytesIO(encoded)))
    np.testing.assert_array_equal(decoded_pil.reshape(shape), image)
    np.testing.assert_array_equal(tf.io.decode_png(encoded).numpy(), image)
    with pytest.raises(ValueError, match="uint8"):
        datasets.encode_png(image.astype(np.float32))


def test_digits_builder(tmp_path):
    from sklearn.datasets import load_digits

    builder = datasets.Digits(data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 1797
    data = tfds.as_numpy(builder.as_dataset(split="train", batch_size=-1))
    images, labels = data["image"], data["label"]
    assert images.shape == (1797, 8, 8, 1) and images.dtype == np.uint8
    digits = load_digits()
    expected = np.round(digits.images * (255 / 16)).astype(np.uint8)
    order = lambda x: sorted(a.tobytes() + bytes([int(b)]) for a, b in zip(*x, strict=True))  # noqa: E731
    assert order((images[..., 0], labels)) == order((expected, digits.target))


def test_list_images_and_folder_config(tmp_path):
    root = tmp_path / "My Photos"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for name in ("x.PNG", "a/y.jpg", "a/b/z.JPEG", ".hidden/h.png", "a/.dot.png", "a/n.gif"):
        (root / name).write_bytes(b"")
    (root / "notes.txt").write_text("")
    assert datasets.list_images(str(root)) == ["a/b/z.JPEG", "a/y.jpg", "x.PNG"]
    first = datasets.folder_config(str(root))
    assert first.name.startswith("my_photos_")
    assert first.files == ("a/b/z.JPEG", "a/y.jpg", "x.PNG")
    assert datasets.folder_config(str(root)).name == first.name  # Stable.
    (root / "a" / "y.jpg").write_bytes(b"changed")
    assert datasets.folder_config(str(root)).name != first.name  # Content size changed.


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_readable_bytes_keeps_or_converts():
    rgb = Image.new("RGB", (6, 4), (200, 30, 60))
    for kept in (_encoded(rgb, "PNG"), _encoded(rgb, "JPEG"), _encoded(rgb.convert("L"), "PNG")):
        assert folder_lib._readable_bytes(kept) == kept
    rgba = Image.new("RGBA", (6, 4), (200, 30, 60, 128))
    palette = rgb.convert("P")
    gray16 = Image.fromarray(np.full((4, 6), 40000, np.uint16))
    cmyk = Image.new("CMYK", (6, 4), (0, 255, 255, 0))
    for image, fmt, channels in ((rgba, "PNG", 3), (palette, "PNG", 3), (gray16, "PNG", 1)):
        converted = folder_lib._readable_bytes(_encoded(image, fmt))
        decoded = tf.io.decode_png(converted).numpy()
        assert decoded.shape == (4, 6, channels)
    np.testing.assert_array_equal(
        tf.io.decode_png(folder_lib._readable_bytes(_encoded(rgba, "PNG"))).numpy()[0, 0],
        [200, 30, 60],
    )
    assert tf.io.decode_png(folder_lib._readable_bytes(_encoded(gray16, "PNG"))).numpy().max() == (
        round(40000 / 257)
    )
    red = tf.io.decode_image(folder_lib._readable_bytes(_encoded(cmyk, "JPEG"))).numpy()
    assert red.shape == (4, 6, 3) and red[0, 0, 0] > 200 and red[0, 0, 1] < 60
    # A JPEG stored sideways with an EXIF orientation is turned upright.
    exif = Image.Exif()
    exif[0x0112] = 6  # Rotate 90 degrees clockwise to display.
    sideways = folder_lib._readable_bytes(_encoded(rgb, "JPEG", exif=exif))
    assert tf.io.decode_image(sideways).numpy().shape == (6, 4, 3)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    for fmt in ("PNG", "JPEG"):
        data = _encoded(noise, fmt)
        with pytest.raises(OSError):  # Truncated files are caught here, not mid-training.
            folder_lib._readable_bytes(data[: len(data) // 2])


def test_folder_builder_mixed_images(tmp_path):
    root = tmp_path / "mixed"
    (root / "nested" / "deeper").mkdir(parents=True)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(root / "wide.png")
    Image.new("L", (16, 64), 77).save(root / "nested" / "tall.JPG")
    Image.new("RGBA", (20, 20), (0, 0, 255, 255)).save(root / "nested" / "deeper" / "alpha.PNG")
    Image.new("P", (8, 8)).save(root / "nested" / "palette.png")
    config = _config(tmp_path / "tfds", dataset=f"folder:{root}", image_size=16, channels=3)
    info = input_pipeline.validate(config)
    assert info.num_examples == 4
    assert info.image_shape == (None, None, 3)
    images = np.concatenate(list(input_pipeline.iterate_images(config)))
    assert images.shape == (4, 16, 16, 3)
    assert images.min() >= -1 and images.max() <= 1
    uniform = sorted(tuple(np.round((im.mean((0, 1)) + 1) * 127.5).astype(int)) for im in images)
    assert uniform == sorted([(255, 0, 0), (77, 77, 77), (0, 0, 255), (0, 0, 0)])
    batch = next(
        input_pipeline.create_input_iter(
            config, process_batch_size=6, process_index=0, process_count=1
        )
    )
    assert batch.shape == (6, 16, 16, 3)  # Batches run across epochs of 4 images.


def test_folder_with_only_bad_images(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.png").write_bytes(b"nope")
    (root / "b.jpg").write_bytes(b"")
    config = _config(tmp_path / "tfds", dataset=f"folder:{root}", bad_images="skip")
    with pytest.raises(DataError, match="none of the 2 images .* can be read"):
        input_pipeline.validate(config)


# MNIST-format archives, small: the expected split sizes are patched down.
SMALL_SPLITS = {"train": 12, "test": 5}


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def _write_idx_archive(directory, *, gz=True, counts=SMALL_SPLITS, max_label=9, magic=0x803):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {}
    for prefix, split in (("train", "train"), ("t10k", "test")):
        images = rng.integers(0, 256, (counts[split], 28, 28), dtype=np.uint8)
        labels = rng.integers(0, max_label + 1, counts[split], dtype=np.uint8)
        labels[0] = max_label
        arrays[split] = (images, labels)
        for kind, data in (("images-idx3", _idx_bytes(images, magic)),):
            name = f"{prefix}-{kind}-ubyte"
            _write(directory / name, data, gz)
        _write(directory / f"{prefix}-labels-idx1-ubyte", _idx_bytes(labels, 0x801), gz)
    return arrays


def _write(path, data: bytes, gz: bool):
    if gz:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_archive(tmp_path, monkeypatch, gz):
    monkeypatch.setattr(datasets.MnistArchive, "SPLIT_SIZES", SMALL_SPLITS)
    arrays = _write_idx_archive(tmp_path / "archive", gz=gz)
    config = _config(
        tmp_path / "tfds", dataset="mnist", archive_dir=str(tmp_path / "archive"), image_size=28
    )
    config.channels = 1
    info = input_pipeline.validate(config)
    assert info.num_examples == 12 and info.name.startswith("gan_jax_mnist")
    for split in ("train", "test"):
        images = np.concatenate(list(input_pipeline.iterate_images(config, split=split)))
        expected = arrays[split][0][..., None].astype(np.float32) / 127.5 - 1
        assert sorted(i.tobytes() for i in images) == sorted(e.tobytes() for e in expected)
    # Prepared once, it is found again without archive_dir or a download.
    config.archive_dir, config.download = None, False
    assert input_pipeline.validate(config).name.startswith("gan_jax_mnist")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"magic": 0x804}, "wrong magic number"),
        ({"counts": {"train": 11, "test": 5}}, r"shape \(11, 28, 28\).*expected \(12, 28, 28\)"),
        ({"max_label": 10}, "label 10 outside 0..9"),
    ],
)
def test_mnist_archive_checks(tmp_path, monkeypatch, kwargs, match):
    monkeypatch.setattr(datasets.MnistArchive, "SPLIT_SIZES", SMALL_SPLITS)
    _write_idx_archive(tmp_path / "archive", **kwargs)
    config = _config(tmp_path / "tfds", dataset="mnist", archive_dir=str(tmp_path / "archive"))
    with pytest.raises(DataError, match=match):
        input_pipeline.validate(config)


def test_mnist_archive_missing_file(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.FashionMnistArchive, "SPLIT_SIZES", SMALL_SPLITS)
    _write_idx_archive(tmp_path / "archive")
    os.remove(tmp_path / "archive" / "t10k-labels-idx1-ubyte.gz")
    config = _config(
        tmp_path / "tfds", dataset="fashion_mnist", archive_dir=str(tmp_path / "archive")
    )
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte.gz or t10k-labels-idx1-ubyte"):
        input_pipeline.validate(config)


def _cifar_batches(counts):
    rng = np.random.default_rng(2)
    sizes = {f"data_batch_{i}": counts["train"] // 5 for i in range(1, 6)}
    sizes["test_batch"] = counts["test"]
    return {
        name: {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [int(x) for x in rng.integers(0, 10, n)],
        }
        for name, n in sizes.items()
    }


def _write_cifar(directory, batches, *, as_tar):
    directory.mkdir(parents=True, exist_ok=True)
    if not as_tar:
        (directory / "cifar-10-batches-py").mkdir()
        for name, batch in batches.items():
            data = pickle.dumps(batch, protocol=2)
            (directory / "cifar-10-batches-py" / name).write_bytes(data)
        return
    with tarfile.open(directory / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, batch in batches.items():
            data = batch if isinstance(batch, bytes) else pickle.dumps(batch, protocol=2)
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


@pytest.mark.parametrize("as_tar", [True, False])
def test_cifar10_archive(tmp_path, monkeypatch, as_tar):
    monkeypatch.setattr(datasets.Cifar10Archive, "SPLIT_SIZES", {"train": 10, "test": 3})
    batches = _cifar_batches({"train": 10, "test": 3})
    _write_cifar(tmp_path / "archive", batches, as_tar=as_tar)
    config = _config(tmp_path / "tfds", dataset="cifar10", archive_dir=str(tmp_path / "archive"))
    assert input_pipeline.validate(config).num_examples == 10
    builder = datasets.Cifar10Archive(data_dir=config.data_dir)
    test = tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1))
    expected = batches["test_batch"][b"data"].reshape(3, 3, 32, 32).transpose(0, 2, 3, 1)
    # Rows are channel-major in the archive: red plane, green plane, blue plane.
    got = {img.tobytes(): int(lbl) for img, lbl in zip(test["image"], test["label"], strict=True)}
    want = {
        img.tobytes(): lbl
        for img, lbl in zip(expected, batches["test_batch"][b"labels"], strict=True)
    }
    assert got == want


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo unsafe",))


@pytest.mark.parametrize(
    "change,match",
    [
        ({"data_batch_3": pickle.dumps(_Evil(), protocol=2)}, "refusing to load"),
        ({"test_batch": {b"data": np.zeros((3, 100), np.uint8), b"labels": [0] * 3}}, "3072"),
        ({"test_batch": {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 4}}, "has 4"),
        ({"test_batch": {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 11, 0]}}, "11"),
    ],
)
def test_cifar10_archive_checks(tmp_path, monkeypatch, change, match):
    monkeypatch.setattr(datasets.Cifar10Archive, "SPLIT_SIZES", {"train": 10, "test": 3})
    batches = {**_cifar_batches({"train": 10, "test": 3}), **change}
    _write_cifar(tmp_path / "archive", batches, as_tar=True)
    config = _config(tmp_path / "tfds", dataset="cifar10", archive_dir=str(tmp_path / "archive"))
    with pytest.raises(DataError, match=match):
        input_pipeline.validate(config)


def test_cifar10_archive_missing(tmp_path):
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "readme.txt").write_text("")
    config = _config(tmp_path / "tfds", dataset="cifar10", archive_dir=str(tmp_path / "archive"))
    with pytest.raises(DataError, match="no cifar-10-python.tar.gz or cifar-10-batches-py/"):
        input_pipeline.validate(config)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="needs dataset-fashion-mnist")
def test_real_fashion_mnist_offline(tmp_path):
    """Debian's Fashion-MNIST files prepare offline and load as the real 60k/10k images."""
    config = _config(
        tmp_path, dataset="fashion_mnist", archive_dir=FASHION_MNIST_DIR, download=False
    )
    config.image_size, config.channels = 28, 1
    info = input_pipeline.validate(config)
    assert info.num_examples == 60_000 and info.image_shape == (28, 28, 1)
    builder = datasets.FashionMnistArchive(data_dir=str(tmp_path))
    assert builder.info.splits["test"].num_examples == 10_000
    labels = tfds.as_numpy(
        builder.as_dataset(
            split="train", batch_size=-1, decoders=tfds.decode.PartialDecoding({"label": True})
        )
    )["label"]
    assert np.bincount(labels).tolist() == [6000] * 10  # Fashion-MNIST is balanced.
    with gzip.open(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz")) as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(10_000, 28, 28, 1)
    test = np.concatenate(list(input_pipeline.iterate_images(config, split="test")))
    expected = raw.astype(np.float32) / 127.5 - 1
    assert sorted(i.tobytes() for i in test) == sorted(e.tobytes() for e in expected)
    config.image_size, config.channels = 32, 3
    batch = next(input_pipeline.create_input_iter(config, process_batch_size=128))
    assert batch.shape == (128, 32, 32, 3) and -1 <= batch.min() < batch.max() <= 1
