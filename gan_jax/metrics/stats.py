"""Feature statistics, their cache files, and FID/KID/IS of generated images against them.

A statistics file (`.npz`) holds `mu` (2048,) and `sigma` (2048, 2048) in float64, the
number of images, optionally up to `kid_features` raw features (a random subset, for KID
and for precision/recall/density/coverage, which need the points, not a Gaussian), and a JSON
`meta` dict: at least `weights_id` and `resize_mode`, plus what the caller describes
the data with (dataset name, split, image size, ...). `reference_stats` reuses a file
only when every one of those entries matches, so changing the data, the resize mode
or the network recomputes it.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from gan_jax.metrics import manifold, scores
from gan_jax.metrics.extractor import Activations, InceptionExtractor

STATS_VERSION = 1


@dataclasses.dataclass
class Stats:
    """Gaussian statistics of Inception features, and how they were made."""

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int
    meta: dict[str, Any]
    features: np.ndarray | None = None  # A random subset of the raw features (KID, PRDC).

    def save(self, path: str) -> None:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        arrays = {"mu": self.mu, "sigma": self.sigma, "num_images": np.int64(self.num_images)}
        if self.features is not None:
            arrays["features"] = self.features
        meta = dict(self.meta, stats_version=STATS_VERSION)
        tmp = path + ".tmp.npz"
        np.savez(tmp, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> Stats:
        with np.load(path, allow_pickle=False) as f:
            return cls(
                mu=f["mu"],
                sigma=f["sigma"],
                num_images=int(f["num_images"]),
                meta=json.loads(str(f["meta"])),
                features=f.get("features"),
            )


def stats_from_activations(
    acts: Activations, meta: Mapping[str, Any] | None = None, kid_features: int = 0, seed: int = 0
) -> Stats:
    """Stats of `acts`; keeps a random `kid_features` of the raw features for KID.

    Example:
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> features = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
      >>> acts = metrics.Activations(features, None, resize_mode="tf1", weights_id="toy")
      >>> stats = metrics.stats_from_activations(acts, {"dataset": "toy"}, kid_features=10)
      >>> stats.num_images, stats.mu.shape, stats.sigma.shape, stats.features.shape
      (100, (8,), (8, 8), (10, 8))
      >>> stats.meta
      {'dataset': 'toy', 'weights_id': 'toy', 'resize_mode': 'tf1'}
    """
    mu, sigma = scores.mean_and_covariance(acts.features)
    kept = None
    if kid_features:
        n = len(acts.features)
        idx = np.random.default_rng(seed).choice(n, min(kid_features, n), replace=False)
        kept = acts.features[np.sort(idx)]
    full_meta = {**(meta or {}), "weights_id": acts.weights_id, "resize_mode": acts.resize_mode}
    return Stats(mu, sigma, len(acts.features), full_meta, kept)


def _extract(
    extractor: InceptionExtractor,
    images: Iterable[np.ndarray],
    num_images: int | None,
    progress: Callable[[int], None] | None,
) -> Activations:
    # Extractors of the caller's own (see the examples) need not take `progress`.
    if progress is None or not _takes_progress(extractor.extract):
        return extractor.extract(images, num_images)
    return extractor.extract(images, num_images, progress=progress)


def _takes_progress(extract: Callable[..., Activations]) -> bool:
    try:
        params = inspect.signature(extract).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "progress" or p.kind is p.VAR_KEYWORD for p in params)


def _mismatch(stored: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    return [k for k, v in expected.items() if stored.get(k) != v]


def reference_stats(
    images: Iterable[np.ndarray],
    cache_path: str | None,
    meta: Mapping[str, Any],
    extractor: InceptionExtractor | None = None,
    num_images: int | None = None,
    kid_features: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Stats:
    """Statistics of a reference image set, read from `cache_path` when it matches.

    Args:
      images: iterable of NHWC batches ([-1, 1] floats or uint8); consumed only when
        the cache is missing or stale (pass a generator to keep that lazy).
      cache_path: `.npz` file to read or write; None never caches.
      meta: JSON-serialisable description of the data (e.g. dataset, split, image_size).
      extractor: the network; None builds `InceptionExtractor()` (default weights, "tf1").
      num_images: evaluate at most this many images (None: all).
      kid_features: raw features to keep for KID (0: none).
      progress: passed to `extractor.extract` when the statistics are computed (called
        with the images done); never called when the cache is used.

    Example (with pixels as features instead of the Inception network):
      >>> import numpy as np, types
      >>> from gan_jax import metrics
      >>> def extract(batches, num_images=None):  # stands in for the Inception network
      ...     x = np.concatenate(list(batches))[:num_images]
      ...     return metrics.Activations(x.reshape(len(x), -1), None, "tf1", "pixels")
      >>> extractor = types.SimpleNamespace(extract=extract, resize_mode="tf1", weights_id="pixels")
      >>> images = [np.random.default_rng(i).uniform(-1, 1, (8, 2, 2, 1)) for i in range(3)]
      >>> ref = metrics.reference_stats(iter(images), "ref.npz", {"dataset": "toy"}, extractor)
      >>> ref.num_images, ref.mu.shape, ref.sigma.shape
      (24, (4,), (4, 4))
      >>> cached = metrics.reference_stats(iter([]), "ref.npz", {"dataset": "toy"}, extractor)
      >>> cached.num_images  # read from ref.npz: no image was needed
      24
    """
    extractor = extractor or InceptionExtractor()
    expected = {
        **meta,
        "weights_id": extractor.weights_id,
        "resize_mode": extractor.resize_mode,
        "num_images_requested": num_images,
    }
    if cache_path and os.path.exists(cache_path):
        cached = Stats.load(cache_path)
        stale = _mismatch(cached.meta, expected)
        if kid_features and (
            cached.features is None or len(cached.features) < min(kid_features, cached.num_images)
        ):
            stale.append("kid_features")
        if not stale:
            return cached
        logging.info("reference statistics %s are stale (%s); recomputing.", cache_path, stale)
    acts = _extract(extractor, images, num_images, progress)
    stats = stats_from_activations(acts, expected, kid_features)
    if cache_path:
        stats.save(cache_path)
    return stats


def _check_comparable(a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
    for key in ("weights_id", "resize_mode"):
        if a.get(key) != b.get(key):
            raise ValueError(
                f"statistics were computed with different {key} ({a.get(key)!r} vs "
                f"{b.get(key)!r}); recompute the reference with the same extractor settings."
            )


def fid(stats1: Stats, stats2: Stats) -> float:
    """FID between two `Stats`, refusing ones made with different networks or resizing.

    Example:
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> def stats_of(features, resize_mode="tf1"):
      ...     acts = metrics.Activations(features, None, resize_mode, "toy")
      ...     return metrics.stats_from_activations(acts)
      >>> features = np.random.default_rng(0).normal(size=(100, 8))
      >>> round(metrics.fid(stats_of(features), stats_of(features + 1.0)), 6)
      8.0
      >>> metrics.fid(stats_of(features), stats_of(features, "pytorch"))
      Traceback (most recent call last):
      ValueError: statistics were computed with different resize_mode ('tf1' vs 'pytorch'); ...
    """
    _check_comparable(stats1.meta, stats2.meta)
    return scores.frechet_distance(stats1.mu, stats1.sigma, stats2.mu, stats2.sigma)


def _prdc(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> dict[str, float]:
    """PRDC on equally many real and fake features; nothing when there are too few."""
    n = min(len(real), len(fake))
    if n <= max(manifold.PR_K, manifold.DC_K):
        return {}
    if n < len(real):
        real = real[np.sort(np.random.default_rng(seed).choice(len(real), n, replace=False))]
    return manifold.prdc(real, fake[:n])


def evaluate_images(
    images: Iterable[np.ndarray],
    reference: Stats,
    extractor: InceptionExtractor | None = None,
    num_images: int | None = None,
    kid: bool = True,
    inception_score: bool = True,
    prdc: bool = True,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """FID (and KID / IS / PRDC when possible) of an image set against reference statistics.

    KID and PRDC (`precision`, `recall`, `density`, `coverage`: `manifold.prdc` with its
    default k) need `reference.features`; IS needs weights with the classifier. PRDC
    compares equally many real and generated features (the papers' setting; the scores
    depend on the set sizes): min(len(reference.features), generated) of each, a seeded
    random subset of the reals and the first of the generated. Returns flat scalars plus
    `num_images`, `resize_mode` and `weights_id`. `progress` is passed to
    `extractor.extract` (called with the images done).

    Example (with pixels as features instead of the Inception network):
      >>> import numpy as np, types
      >>> from gan_jax import metrics
      >>> def extract(batches, num_images=None):  # stands in for the Inception network
      ...     x = np.concatenate(list(batches))[:num_images]
      ...     return metrics.Activations(x.reshape(len(x), -1), None, "tf1", "pixels")
      >>> extractor = types.SimpleNamespace(extract=extract, resize_mode="tf1", weights_id="pixels")
      >>> images = np.random.default_rng(0).uniform(-0.5, 0.5, (32, 2, 2, 1))
      >>> ref = metrics.reference_stats([images], None, {}, extractor, kid_features=32)
      >>> result = metrics.evaluate_images([images + 0.5], ref, extractor)
      >>> round(result["fid"], 6), result["num_images"]  # mean shift: 4 * 0.5^2
      (1.0, 32)
      >>> sorted(result)  # doctest: +NORMALIZE_WHITESPACE
      ['coverage', 'density', 'fid', 'kid_mean', 'kid_std', 'num_images', 'precision',
       'recall', 'resize_mode', 'weights_id']
    """
    extractor = extractor or InceptionExtractor(resize_mode=reference.meta["resize_mode"])
    acts = _extract(extractor, images, num_images, progress)
    generated = stats_from_activations(acts)
    result: dict[str, Any] = {"fid": fid(generated, reference)}
    if kid and reference.features is not None:
        result["kid_mean"], result["kid_std"] = scores.kernel_inception_distance(
            acts.features, reference.features
        )
    if prdc and reference.features is not None:
        result.update(_prdc(reference.features, acts.features))
    if inception_score and acts.logits is not None:
        result["is_mean"], result["is_std"] = scores.inception_score(acts.logits)
    result.update(
        num_images=len(acts.features), resize_mode=acts.resize_mode, weights_id=acts.weights_id
    )
    return result
