"""Input pipeline: a tfds split as an endless, exactly resumable stream of image batches.

The stream of a process is a pure function of (config.seed, dataset, split,
process_index, process_count, shuffle_buffer). The process's part of the split is
read in its stored order, images still encoded, and cut into windows of
`shuffle_buffer` examples; epoch e shuffles window w with a stateless permutation
keyed by (config.seed, e, w). Epochs follow each other without a break, so a batch
may hold the end of one epoch and the start of the next. Resuming after k examples
skips whole windows and then the rest of one window, all before decoding, so
`create_input_iter(..., start_example=k)` is cheap and yields exactly what an
uninterrupted iterator yields after its first k examples. (tfds already shuffled
the examples when it prepared the data, so windows mix well; a window as large as
the split is a uniform permutation. Stateless permutations are fixed for a given
TensorFlow version, whatever the global TensorFlow seed.)

Images are decoded, centre-cropped, resized and scaled to float32 [-1, 1] by
`gan_jax.decode`.

With `config.conditional`, batches are dicts `{"image": images, "label": int32
labels}`; the images come in the same order as without labels. The dataset must
have a `label` class feature with `config.num_classes` classes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from gan_jax import datasets, decode
from gan_jax.datasets import DataError
from gan_jax.preflight import FOLDER_PREFIX

__all__ = ["DataError", "DatasetInfo", "create_input_iter", "iterate_images", "validate"]

# Splits up to this size (encoded) are cached in memory after the first epoch.
_CACHE_MAX_BYTES = 1 << 30
_tf_devices_hidden = False
_warned: set[str] = set()


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What `validate` found: the tfds name, split size, source image shape, description."""

    name: str
    num_examples: int  # Of `config.split`, all processes together.
    image_shape: tuple[int | None, ...]  # Of the stored images (None: varies).
    description: str


def _hide_accelerators_from_tf() -> None:
    """Keeps TensorFlow off GPUs and TPUs: they belong to JAX."""
    global _tf_devices_hidden
    if _tf_devices_hidden:
        return
    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError) as e:  # Devices already initialised / no such kind.
            logging.warning("Could not hide %s devices from TensorFlow: %s", kind, e)
    _tf_devices_hidden = True


def _check_config(config: ml_collections.ConfigDict) -> None:
    if config.channels not in (1, 3):
        raise DataError(f"config.channels is {config.channels!r}: set it to 1 or 3")
    if not isinstance(config.image_size, int) or config.image_size < 1:
        raise DataError(f"config.image_size is {config.image_size!r}: set a positive integer")
    if not isinstance(config.shuffle_buffer, int) or config.shuffle_buffer < 1:
        raise DataError(
            f"config.shuffle_buffer is {config.shuffle_buffer!r}: set a positive integer"
        )
    if config.bad_images not in ("fail", "skip"):
        raise DataError(f"config.bad_images is {config.bad_images!r}: set it to fail or skip")
    if not isinstance(config.dataset, str) or not config.dataset:
        raise DataError(
            f"config.dataset is {config.dataset!r}: set a tfds name (e.g. cifar10), "
            "digits or folder:/path/to/images"
        )


def _data_dir_text(config: ml_collections.ConfigDict) -> str:
    return config.data_dir or "the tfds data_dir (~/tensorflow_datasets by default)"


def _prepare_local(builder: tfds.core.DatasetBuilder, **kwargs) -> None:
    """Prepares a dataset of ours (no network), keeping our error messages clean."""
    if builder.is_prepared():
        return
    try:
        builder.download_and_prepare(**kwargs)
    except DataError as e:
        raise DataError(e.message) from e.__cause__


def _archive_builder(
    config: ml_collections.ConfigDict, name: str
) -> tfds.core.DatasetBuilder | None:
    """Our offline builder of `name` when archive_dir is set or it was prepared before."""
    if name not in datasets.ARCHIVE_BUILDERS:
        if config.archive_dir:
            raise DataError(
                f"--config.archive_dir works for {', '.join(datasets.ARCHIVE_BUILDERS)}, "
                f"not {name}: unset it, or download {name} with --config.download=True"
            )
        return None
    builder = datasets.ARCHIVE_BUILDERS[name](data_dir=config.data_dir)
    if not config.archive_dir:
        return builder if builder.is_prepared() else None
    if not builder.is_prepared():
        archive_dir = os.path.expanduser(config.archive_dir)
        if not os.path.isdir(archive_dir):
            raise DataError(
                f"archive_dir {archive_dir} is not a folder: fix --config.archive_dir "
                f"(it holds the original {name} files)"
            )
        logging.info("Preparing %s from the archive files in %s.", name, archive_dir)
        _prepare_local(
            builder, download_config=tfds.download.DownloadConfig(manual_dir=archive_dir)
        )
    return builder


def _tfds_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    name = config.dataset
    builder = _archive_builder(config, name)
    if builder is not None:
        return builder
    try:
        builder = tfds.builder(name, data_dir=config.data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(
            f"unknown dataset {name!r}: set --config.dataset to a tfds name (e.g. cifar10, "
            "mnist, celeb_a), digits or folder:/path/to/images"
        ) from e
    if builder.is_prepared():
        return builder
    if not config.download:
        raise DataError(
            f"{name} is not prepared in {_data_dir_text(config)}: pass --config.download=True, "
            "--config.archive_dir=DIR (mnist, fashion_mnist, cifar10) or the right "
            "--config.data_dir"
        )
    logging.info("Downloading and preparing %s into %s.", name, _data_dir_text(config))
    try:
        builder.download_and_prepare()
    except Exception as e:  # Network errors come in many types.
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        raise DataError(
            f"could not download {name} ({type(e).__name__}: {first_line}): no network? "
            "prepare it offline with --config.archive_dir=DIR (mnist, fashion_mnist, cifar10) "
            f"or copy a prepared copy into {_data_dir_text(config)}"
        ) from e
    return builder


def _folder_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    if config.archive_dir:
        raise DataError("--config.archive_dir is not used by folder datasets: unset it")
    folder = config.dataset[len(FOLDER_PREFIX) :]
    builder_config = datasets.folder_config(folder, skip_bad=config.bad_images == "skip")
    builder = datasets.ImageFolder(config=builder_config, data_dir=config.data_dir)
    _prepare_local(builder)
    skipped = list(builder.info.metadata.get("skipped", []))
    if skipped and config.bad_images == "fail":
        raise DataError(
            f"unreadable image {os.path.join(builder_config.folder, skipped[0])} "
            f"({len(skipped)} unreadable in all): fix or remove them, or pass "
            "--config.bad_images=skip to leave them out"
        )
    if skipped and builder_config.name not in _warned:
        _warned.add(builder_config.name)
        logging.warning(
            "Skipped %d unreadable image(s) in %s, e.g. %s.",
            len(skipped),
            builder_config.folder,
            skipped[0],
        )
    return builder


def _builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    """The prepared builder of `config.dataset`; raises DataError with the fix."""
    _check_config(config)
    if config.dataset == "digits":
        if config.archive_dir:
            raise DataError("--config.archive_dir is not used by digits: unset it")
        builder = datasets.Digits(data_dir=config.data_dir)
        _prepare_local(builder)
    elif config.dataset.startswith(FOLDER_PREFIX):
        builder = _folder_builder(config)
    else:
        builder = _tfds_builder(config)
    features = builder.info.features
    feature = features["image"] if features is not None and "image" in features else None
    if not isinstance(feature, tfds.features.Image):
        raise DataError(
            f"{config.dataset} has no 'image' feature of type tfds.features.Image: "
            "use an image dataset"
        )
    if np.dtype(feature.np_dtype) != np.uint8:
        raise DataError(
            f"{config.dataset} images are {feature.np_dtype}, not uint8: use a dataset "
            "of 8-bit images"
        )
    if _conditional(config):
        _check_labels(config, features)
    return builder


def _conditional(config: ml_collections.ConfigDict) -> bool:
    return bool(config.get("conditional", False))


def _check_labels(config: ml_collections.ConfigDict, features: tfds.features.FeaturesDict) -> None:
    """Raises DataError unless the dataset has class labels, as many as config.num_classes."""
    label = dict(features.items()).get("label")  # FeaturesDict has no get().
    if not isinstance(label, tfds.features.ClassLabel):
        raise DataError(
            f"--config.conditional=True needs class labels, but {config.dataset} has no 'label' "
            "class feature: use a labelled dataset (cifar10, mnist, fashion_mnist, digits) "
            "or --config.conditional=False"
        )
    if label.num_classes != config.num_classes:
        raise DataError(
            f"{config.dataset} has {label.num_classes} classes but --config.num_classes="
            f"{config.num_classes}: set --config.num_classes={label.num_classes}"
        )


def _split_size(builder: tfds.core.DatasetBuilder, split: str, dataset: str) -> int:
    try:
        return int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError, TypeError) as e:
        raise DataError(
            f"{dataset} has no split {split!r} (it has {', '.join(builder.info.splits)}): "
            "set --config.split to one of them (slices like train[:90%] work too)"
        ) from e


def validate(config: ml_collections.ConfigDict) -> DatasetInfo:
    """Checks that `config`'s data exists or can be prepared, preparing it if needed.

    Cheap when the data is already prepared. Raises DataError, naming the problem
    and the fix, for an unknown dataset, data that is missing and cannot be
    downloaded, an empty folder, an unreadable image, a missing split, ...
    """
    _hide_accelerators_from_tf()
    builder = _builder(config)
    num_examples = _split_size(builder, config.split, config.dataset)
    if num_examples == 0:
        raise DataError(f"split {config.split!r} of {config.dataset} is empty: use another")
    return DatasetInfo(
        name=builder.info.full_name,
        num_examples=num_examples,
        image_shape=tuple(builder.info.features["image"].shape),
        description=(builder.info.description or "").strip(),
    )


def split_size(config: ml_collections.ConfigDict, split: str | None = None) -> int:
    """The number of examples in `split` (default: `config.split`) of `config`'s dataset.

    Prepares the dataset if needed, like `validate`; slices like "train[:10%]" work.
    """
    _hide_accelerators_from_tf()
    split = config.split if split is None else split
    return _split_size(_builder(config), split, config.dataset)


def _encoded_images(
    builder: tfds.core.DatasetBuilder,
    split: str | tfds.typing.SplitArg,
    labels: bool = False,
) -> tf.data.Dataset:
    """The split's images, still encoded, in their stored order.

    With `labels`, dicts `{"image": encoded image, "label": int64 label}`.
    """
    features = {"image": True, "label": True} if labels else {"image": True}
    ds = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders=tfds.decode.PartialDecoding(
            features, decoders={"image": tfds.decode.SkipDecoding()}
        ),
        read_config=tfds.ReadConfig(try_autocache=False, add_tfds_id=False),
    )
    if labels:
        return ds.map(lambda example: {"image": example["image"], "label": example["label"]})
    return ds.map(lambda example: example["image"])


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    return options


def _shuffled_stream(
    encoded: tf.data.Dataset,
    *,
    num_examples: int,
    window: int,
    seed: int,
    start_example: int,
    cache: bool,
) -> tf.data.Dataset:
    """The endless stream of encoded images from `start_example` on (see the module doc)."""
    epoch, within = divmod(start_example, num_examples)
    first_window, offset = divmod(within, window)
    windows_per_epoch = -(-num_examples // window)
    key = tf.constant([0, seed], tf.int64)

    def shuffle(index: tf.Tensor, examples: tf.Tensor | dict[str, tf.Tensor]) -> tf.Tensor:
        epoch_key = tf.random.experimental.stateless_fold_in(
            key, index // windows_per_epoch, alg="philox"
        )
        window_key = tf.random.experimental.stateless_fold_in(
            epoch_key, index % windows_per_epoch, alg="philox"
        )
        if not isinstance(examples, dict):
            return tf.random.experimental.stateless_shuffle(examples, window_key, alg="philox")
        # The permutation that stateless_shuffle applies to an array of the same length.
        size = tf.shape(examples["image"], out_type=tf.int64)[0]
        order = tf.random.experimental.stateless_shuffle(tf.range(size), window_key, alg="philox")
        return {name: tf.gather(values, order) for name, values in examples.items()}

    ds = encoded.batch(window)
    if cache:
        ds = ds.cache()
    ds = ds.repeat().skip(first_window)
    ds = ds.enumerate(start=epoch * windows_per_epoch + first_window)
    ds = ds.map(shuffle).prefetch(1)  # Reads the next window meanwhile.
    return ds.unbatch().skip(offset)


def _estimated_bytes(builder: tfds.core.DatasetBuilder, num_examples: int) -> float:
    """Encoded size of `num_examples` examples (tfds only knows the size of whole splits)."""
    splits = builder.info.splits.values()
    total_bytes = sum(int(s.num_bytes or 0) for s in splits)
    total_examples = sum(int(s.num_examples) for s in splits)
    return total_bytes / max(total_examples, 1) * num_examples


def create_input_iter(
    config: ml_collections.ConfigDict,
    *,
    process_batch_size: int,
    start_example: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[np.ndarray | dict[str, np.ndarray]]:
    """Endless float32 batches (process_batch_size, S, S, C) in [-1, 1] for this process.

    With `config.conditional`, dicts `{"image": that batch, "label": int32
    (process_batch_size,)}`.

    The process reads its own part of `config.split` (`tfds.split_for_jax_process`);
    `process_index`/`process_count` default to JAX's. With `start_example=k` the
    iterator yields exactly what an uninterrupted one yields after its first k
    examples (k = steps * process_batch_size when resuming a run).

    Example:
      >>> import contextlib, io, gan_jax
      >>> config = gan_jax.default_config()
      >>> config.update(dict(dataset="digits", data_dir="data", image_size=16, channels=1))
      >>> with contextlib.redirect_stdout(io.StringIO()):  # tfds reports preparing the data
      ...     batches = gan_jax.create_input_iter(config, process_batch_size=8)
      >>> first, second = next(batches), next(batches)
      >>> first.shape, first.dtype, float(first.min()), float(first.max())
      ((8, 16, 16, 1), dtype('float32'), -1.0, 1.0)
      >>> resumed = gan_jax.create_input_iter(config, process_batch_size=8, start_example=8)
      >>> bool((next(resumed) == second).all())
      True
    """
    if process_batch_size < 1:
        raise DataError(f"process_batch_size is {process_batch_size}: use a positive batch size")
    if start_example < 0:
        raise DataError(f"start_example is {start_example}: it counts examples, from 0")
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise DataError(f"process_index {process_index} is not in [0, {process_count})")
    _hide_accelerators_from_tf()
    builder = _builder(config)
    _split_size(builder, config.split, config.dataset)
    split = tfds.split_for_jax_process(
        config.split, process_index=process_index, process_count=process_count
    )
    num_examples = int(builder.info.splits[split].num_examples)
    cache = _estimated_bytes(builder, num_examples) <= _CACHE_MAX_BYTES
    if num_examples == 0:
        raise DataError(
            f"process {process_index} of {process_count} gets no examples of "
            f"{config.dataset} {config.split!r}: use a larger split or fewer processes"
        )
    conditional = _conditional(config)
    encoded = _encoded_images(builder, split, labels=conditional)
    window = min(config.shuffle_buffer, num_examples)
    logging.info(
        "Input: %s %s, process %d/%d: %d examples, shuffled in windows of %d%s, from example %d.",
        config.dataset,
        config.split,
        process_index,
        process_count,
        num_examples,
        window,
        ", cached in memory" if cache else "",
        start_example,
    )
    ds = _shuffled_stream(
        encoded,
        num_examples=num_examples,
        window=window,
        seed=config.seed,
        start_example=start_example,
        cache=cache,
    )
    preprocess = decode.training_image_fn(
        tuple(builder.info.features["image"].shape), config.image_size, config.channels
    )
    if conditional:

        def preprocess_example(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            return {
                "image": preprocess(example["image"]),
                "label": tf.cast(example["label"], tf.int32),
            }

        ds = ds.map(preprocess_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(process_batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return iter(ds.with_options(_options()).as_numpy_iterator())


def iterate_images(
    config: ml_collections.ConfigDict,
    *,
    split: str | None = None,
    num_examples: int | None = None,
    batch_size: int = 256,
) -> Iterator[np.ndarray]:
    """One pass, in stored order, over the first `num_examples` images of a split.

    Batches are float32 (<= batch_size, S, S, C) in [-1, 1] as in training (the last
    one may be smaller). `split` defaults to `config.split`; all of it by default.

    Example:
      >>> import contextlib, io, gan_jax
      >>> config = gan_jax.default_config()
      >>> config.update(dict(dataset="digits", data_dir="data", image_size=16, channels=1))
      >>> with contextlib.redirect_stdout(io.StringIO()):  # tfds reports preparing the data
      ...     batches = gan_jax.iterate_images(config, num_examples=10, batch_size=4)
      >>> [batch.shape for batch in batches]
      [(4, 16, 16, 1), (4, 16, 16, 1), (2, 16, 16, 1)]
    """
    if batch_size < 1:
        raise DataError(f"batch_size is {batch_size}: use a positive batch size")
    if num_examples is not None and num_examples < 1:
        raise DataError(f"num_examples is {num_examples}: use a positive number or None")
    _hide_accelerators_from_tf()
    builder = _builder(config)
    split = config.split if split is None else split
    _split_size(builder, split, config.dataset)
    ds = _encoded_images(builder, split)
    if num_examples is not None:
        ds = ds.take(num_examples)
    preprocess = decode.training_image_fn(
        tuple(builder.info.features["image"].shape), config.image_size, config.channels
    )
    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return iter(ds.with_options(_options()).as_numpy_iterator())
