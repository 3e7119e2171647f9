"""The scorer: FID, KID and IS of generated images against reference images, as one dict.

It takes image batches and nothing else: where they come from (a generator state,
a dataset split, files) is the caller's business (`python -m gan_jax.evaluate`
builds them from a run). The reference statistics are cached by what identifies the
reference images, so the reference is read once per dataset, resolution and network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from gan_jax.metrics import stats
from gan_jax.metrics.extractor import InceptionExtractor

# Reference image batches, or a function returning them: called only when the cached
# statistics cannot be used, so that reading a dataset costs nothing on a cache hit.
Images = Iterable[np.ndarray]
ImageSource = Images | Callable[[], Images]
# Called with the number of images whose features are done (0 as the work starts).
Progress = Callable[[int], None]


def stats_path(stats_dir: str, meta: Mapping[str, Any], resize: str, num_ref: int | None) -> str:
    """The cache file of a reference's statistics, named by what identifies the images.

    `meta` describes the reference: its `dataset`, `split`, `image_size` and `channels`.

    Example:
      >>> from gan_jax import metrics
      >>> meta = {"dataset": "folder:/data/faces", "split": "train", "image_size": 64,
      ...         "channels": 3}
      >>> metrics.stats_path("stats", meta, "tf1", 10_000)
      'stats/folder__data_faces-train-64x3-tf1-10000.npz'
    """
    name = "-".join(
        str(v).replace("/", "_").replace(":", "_")
        for v in (
            meta["dataset"],
            meta["split"],
            f"{meta['image_size']}x{meta['channels']}",
            resize,
            "all" if num_ref is None else num_ref,
        )
    )
    return os.path.join(stats_dir, name + ".npz")


def score_images(
    generated: Images,
    reference: ImageSource,
    reference_meta: Mapping[str, Any],
    *,
    extractor: InceptionExtractor | None = None,
    num_images: int | None = None,
    num_ref: int | None = None,
    kid_features: int = 10_000,
    stats_dir: str | None = None,
    reference_progress: Progress | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Scores `generated` against `reference`: a flat dict of JSON values.

    Args:
      generated: NHWC batches ([-1, 1] floats or uint8); at most `num_images` are used.
      reference: batches of the real images, or a function returning them (called
        only when the statistics are not cached).
      reference_meta: what identifies the reference (see `stats_path`; any other
        JSON entries are kept too).
      extractor: the network; None builds `InceptionExtractor()`.
      num_ref: reference images to use (None: all).
      kid_features: reference features kept for KID (0: no KID).
      stats_dir: the reference statistics' cache directory (None: no cache).
      reference_progress, progress: called with 0 as the features of the reference
        (only when they are not cached) and of `generated` start, then with the images
        done, e.g. a tqdm bar's `update` (see `gan_jax.progress`).

    Returns `fid`, `kid_mean`/`kid_std` (with `kid_features`), `is_mean`/`is_std`
    (weights with the classifier), `num_images`, `resize_mode`, `weights_id`,
    `reference` (its meta and `num_images`) and `seconds` (time per image set).

    Example (with pixels as features instead of the Inception network):
      >>> import numpy as np, types
      >>> from gan_jax import metrics
      >>> def extract(batches, num_images=None):  # stands in for the Inception network
      ...     x = np.concatenate(list(batches))[:num_images]
      ...     return metrics.Activations(x.reshape(len(x), -1), None, "tf1", "pixels")
      >>> extractor = types.SimpleNamespace(extract=extract, resize_mode="tf1", weights_id="pixels")
      >>> real = np.random.default_rng(0).uniform(-0.5, 0.5, (32, 2, 2, 1))
      >>> meta = {"dataset": "toy", "split": "train", "image_size": 2, "channels": 1}
      >>> result = metrics.score_images([real + 0.5], lambda: [real], meta, extractor=extractor)
      >>> round(result["fid"], 6), result["num_images"], result["reference"]["num_images"]
      (1.0, 32, 32)
    """
    extractor = extractor or InceptionExtractor()
    cache = (
        stats_path(stats_dir, reference_meta, extractor.resize_mode, num_ref) if stats_dir else None
    )
    t0 = time.time()
    ref = stats.reference_stats(
        _lazy(reference),
        cache,
        reference_meta,
        extractor,
        num_images=num_ref,
        kid_features=kid_features,
        progress=reference_progress,
    )
    t1 = time.time()
    result = stats.evaluate_images(generated, ref, extractor, num_images, progress=progress)
    result.update(
        reference={**reference_meta, "num_images": ref.num_images},
        seconds={"reference": round(t1 - t0, 1), "generated": round(time.time() - t1, 1)},
    )
    return result


def _lazy(source: ImageSource) -> Images:
    """The batches of `source`; a function is called only once they are asked for."""
    if not callable(source):
        return source

    def batches():
        yield from source()

    return batches()
