"""Input pipeline: batch format, exact resume, shuffling, per-process sharding, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits

from gan_jax import input_pipeline
from gan_jax.config import default_config
from gan_jax.input_pipeline import DataError

NUM_DIGITS = 1797


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    tfds.disable_progress_bar()
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, **overrides):
    config = default_config()
    config.dataset = "digits"
    config.data_dir = data_dir
    config.image_size = 8
    config.channels = 1
    config.shuffle_buffer = 500
    config.update(overrides)
    return config


def _take(config, num_batches, batch_size, **kwargs):
    it = input_pipeline.create_input_iter(
        config, process_batch_size=batch_size, process_index=0, process_count=1, **kwargs
    )
    return [next(it) for _ in range(num_batches)]


def _sorted_rows(images):
    """Images as a sorted list of byte strings: a multiset that ignores order."""
    return sorted(np.asarray(image).tobytes() for image in images)


def _all_images(config, **kwargs):
    return np.concatenate(list(input_pipeline.iterate_images(config, **kwargs)))


def test_validate_digits(data_dir):
    info = input_pipeline.validate(_config(data_dir))
    assert info.num_examples == NUM_DIGITS
    assert info.image_shape == (8, 8, 1)
    assert info.name.startswith("gan_jax_digits")
    assert "scikit-learn" in info.description


@pytest.mark.parametrize("size,channels", [(8, 1), (16, 3), (32, 1)])
def test_batch_shape_dtype_range(data_dir, size, channels):
    (batch,) = _take(_config(data_dir, image_size=size, channels=channels), 1, 24)
    assert batch.shape == (24, size, size, channels)
    assert batch.dtype == np.float32
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    # Digits have black background and white strokes: both ends of the range occur.
    assert batch.min() == -1.0 and batch.max() > 0.9


def test_images_are_the_digits(data_dir):
    """At the source size nothing is resized: the pixels are exactly the scaled digits."""
    images = _all_images(_config(data_dir), batch_size=500)
    assert images.shape == (NUM_DIGITS, 8, 8, 1)
    expected = np.round(load_digits().images * (255 / 16)).astype(np.float32) / 127.5 - 1
    assert _sorted_rows(images[..., 0]) == _sorted_rows(expected.astype(np.float32))


def test_iterate_images_partial_last_batch(data_dir):
    batches = list(
        input_pipeline.iterate_images(_config(data_dir), num_examples=300, batch_size=128)
    )
    assert [len(b) for b in batches] == [128, 128, 44]
    again = list(input_pipeline.iterate_images(_config(data_dir), num_examples=300, batch_size=128))
    np.testing.assert_array_equal(np.concatenate(batches), np.concatenate(again))


def test_gray_to_rgb_tiles(data_dir):
    gray = _take(_config(data_dir, image_size=16, channels=1), 2, 16)
    rgb = _take(_config(data_dir, image_size=16, channels=3), 2, 16)
    for g, c in zip(gray, rgb, strict=True):
        for channel in range(3):
            np.testing.assert_array_equal(c[..., channel], g[..., 0])


def test_rgb_to_gray(tmp_path, data_dir):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 100, 50)]
    folder = tmp_path / "colors"
    folder.mkdir()
    for i, color in enumerate(colors):
        Image.new("RGB", (16, 16), color).save(folder / f"{i}.png")
    config = _config(data_dir, dataset=f"folder:{folder}", image_size=16, channels=1)
    images = _all_images(config)
    assert images.shape == (4, 16, 16, 1)
    values = sorted(float(image[0, 0, 0]) for image in images)
    for image in images:
        assert np.all(image == image[0, 0, 0])  # Uniform colours stay uniform.
    weights = np.array([0.2989, 0.587, 0.114])
    expected = sorted(float(np.dot(weights, c)) / 127.5 - 1 for c in colors)
    np.testing.assert_allclose(values, expected, atol=1e-3)
    rgb = _all_images(_config(data_dir, dataset=f"folder:{folder}", image_size=16, channels=3))
    got = sorted(tuple(np.round((image[0, 0] + 1) * 127.5).astype(int)) for image in rgb)
    assert got == sorted(colors)


def test_epochs_are_permutations_and_reshuffled(data_dir):
    config = _config(data_dir)
    everything = _sorted_rows(_all_images(config))
    for buffer in (500, 10_000):  # Windowed and full shuffles.
        config.shuffle_buffer = buffer
        epoch0, epoch1 = _take(config, 2, NUM_DIGITS)  # One batch = one epoch.
        assert _sorted_rows(epoch0) == everything
        assert _sorted_rows(epoch1) == everything
        assert not np.array_equal(epoch0, epoch1)
    other_seed = _take(_config(data_dir, seed=1), 1, 100)[0]
    assert not np.array_equal(other_seed, _take(config, 1, 100)[0])


@pytest.mark.parametrize("buffer", [500, 10_000])
def test_exact_resume(data_dir, buffer):
    """Resuming after k batches yields what an uninterrupted iterator yields next."""
    config = _config(data_dir, shuffle_buffer=buffer)
    batch_size, num_batches = 32, 70  # 70 * 32 = 2240 examples: past the first epoch.
    full = _take(config, num_batches, batch_size)
    # 15 -> 16: crosses the first window (500); 56: holds the epoch boundary (1797).
    for k in (0, 3, 15, 56, 57, 68):
        resumed = _take(config, num_batches - k, batch_size, start_example=k * batch_size)
        for j, batch in enumerate(resumed):
            np.testing.assert_array_equal(batch, full[k + j], err_msg=f"resume at {k}, batch {j}")


def test_stream_ignores_tensorflow_global_seed(data_dir):
    config = _config(data_dir)
    before = _take(config, 2, 64)
    tf.random.set_seed(1234)
    after = _take(config, 2, 64)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_process_shards_are_disjoint_and_cover_the_split(data_dir):
    config = _config(data_dir)
    shards = []
    for index, size in ((0, 899), (1, 898)):  # tfds gives the first shards the remainder.
        it = input_pipeline.create_input_iter(
            config, process_batch_size=size, process_index=index, process_count=2
        )
        shards.append(next(it))  # One batch = one epoch of the shard.
        assert _sorted_rows(next(it)) == _sorted_rows(shards[-1])  # Next epoch: same shard.
    assert _sorted_rows(np.concatenate(shards)) == _sorted_rows(_all_images(config))


def test_tfds_name_path_prepares_and_refuses(tmp_path):
    """A tfds name: prepared on demand with download=True, refused with download=False."""
    config = _config(str(tmp_path / "fresh"), dataset="gan_jax_digits", download=False)
    with pytest.raises(DataError, match="not prepared.*--config.download=True"):
        input_pipeline.validate(config)
    config.download = True
    assert input_pipeline.validate(config).num_examples == NUM_DIGITS
    config.download = False  # Prepared now: no download needed.
    (batch,) = _take(config, 1, 8)
    assert batch.shape == (8, 8, 8, 1)


def test_download_failure_is_a_data_error(tmp_path, monkeypatch):
    def no_network(self, *args, **kwargs):
        raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
    config = _config(str(tmp_path), dataset="mnist", download=True)
    with pytest.raises(DataError, match="could not download mnist.*no network.*archive_dir"):
        input_pipeline.validate(config)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"dataset": "no_such_dataset_xyz"}, "unknown dataset 'no_such_dataset_xyz'"),
        ({"dataset": ""}, "config.dataset is ''"),
        ({"channels": 2}, "config.channels is 2"),
        ({"shuffle_buffer": 0}, "config.shuffle_buffer is 0"),
        ({"bad_images": "ignore"}, "config.bad_images is 'ignore'"),
        ({"split": "validation"}, "no split 'validation'.*--config.split"),
        ({"archive_dir": "/tmp"}, "archive_dir is not used by digits"),
        ({"dataset": "celeb_a", "archive_dir": "/tmp"}, "archive_dir works for mnist"),
        ({"dataset": "mnist", "archive_dir": "/no/such/dir"}, "is not a folder"),
        ({"dataset": "folder:/no/such/dir"}, "does not exist"),
    ],
)
def test_bad_config_is_a_data_error(data_dir, overrides, match):
    with pytest.raises(DataError, match=match):
        input_pipeline.validate(_config(data_dir, **overrides))


def test_bad_iterator_arguments(data_dir):
    config = _config(data_dir)
    with pytest.raises(DataError, match="process_batch_size"):
        input_pipeline.create_input_iter(config, process_batch_size=0)
    with pytest.raises(DataError, match="process_index 2 is not in"):
        input_pipeline.create_input_iter(
            config, process_batch_size=4, process_index=2, process_count=2
        )
    with pytest.raises(DataError, match="gets no examples"):
        input_pipeline.create_input_iter(
            config, process_batch_size=4, process_index=1999, process_count=2000
        )


def _write_folder(folder, num_good=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_good):
        Image.new("RGB", (20 + i, 12), (10 * i, 50, 90)).save(folder / f"good{i}.png")


def test_empty_folder(tmp_path, data_dir):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="no .png/.jpg/.jpeg images in"):
        input_pipeline.validate(_config(data_dir, dataset=f"folder:{tmp_path / 'empty'}"))


def test_unreadable_image_fail_and_skip(tmp_path, data_dir, caplog):
    folder = tmp_path / "photos"
    _write_folder(folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    config = _config(data_dir, dataset=f"folder:{folder}", image_size=16, channels=3)
    with pytest.raises(DataError, match=r"unreadable image .*broken\.jpg.*bad_images=skip"):
        input_pipeline.validate(config)
    config.bad_images = "skip"
    with caplog.at_level("WARNING"):
        info = input_pipeline.validate(config)
        input_pipeline.validate(config)
    assert info.num_examples == 3
    warnings = [r for r in caplog.records if "Skipped 1 unreadable" in r.getMessage()]
    assert len(warnings) == 1
    # Prepared with "skip", the folder still fails under "fail", naming the file.
    config.bad_images = "fail"
    with pytest.raises(DataError, match=r"broken\.jpg \(1 unreadable in all\)"):
        input_pipeline.validate(config)


def test_changed_folder_is_prepared_again(tmp_path, data_dir):
    folder = tmp_path / "grows"
    _write_folder(folder, num_good=2)
    config = _config(data_dir, dataset=f"folder:{folder}", image_size=16, channels=3)
    assert input_pipeline.validate(config).num_examples == 2
    Image.new("L", (40, 30), 128).save(folder / "more.JPG")
    assert input_pipeline.validate(config).num_examples == 3
    images = _all_images(config)
    assert images.shape == (3, 16, 16, 3)
    os.remove(folder / "good0.png")
    assert input_pipeline.validate(config).num_examples == 2
