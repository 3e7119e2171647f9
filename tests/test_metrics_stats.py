"""Reference statistics: cache files, when they are reused, and scoring against them."""

from __future__ import annotations

import numpy as np
import pytest

from gan_jax.metrics import manifold, scores, stats
from gan_jax.metrics.extractor import Activations


class CountingExtractor:
    """Stands in for the Inception network: features are a fixed projection of the pixels."""

    def __init__(self, resize_mode: str = "tf1", weights_id: str = "w1"):
        self.resize_mode = resize_mode
        self.weights_id = weights_id
        self.calls = 0
        self._proj = np.random.default_rng(0).normal(size=(8 * 8 * 1, 16))

    def extract(self, batches, num_images=None):
        self.calls += 1
        images = np.concatenate(list(batches))[:num_images]
        feats = images.reshape(len(images), -1) @ self._proj
        logits = feats[:, :10]
        return Activations(feats.astype(np.float32), logits, self.resize_mode, self.weights_id)


def _batches(seed: int, n: int = 3, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    return [np.clip(rng.uniform(-1, 1, (20, 8, 8, 1)) * 0.5 + offset, -1, 1) for _ in range(n)]


def test_reference_stats_are_cached_and_reused(tmp_path):
    path = str(tmp_path / "ref.npz")
    meta = {"dataset": "toy", "split": "train"}
    ex = CountingExtractor()
    first = stats.reference_stats(iter(_batches(0)), path, meta, ex, kid_features=25)
    assert ex.calls == 1 and first.num_images == 60 and first.features.shape == (25, 16)
    mu, sigma = scores.mean_and_covariance(ex.extract(_batches(0)).features)
    np.testing.assert_allclose(first.mu, mu)
    np.testing.assert_allclose(first.sigma, sigma)

    again = stats.reference_stats(iter(_batches(0)), path, meta, ex, kid_features=25)
    assert ex.calls == 2  # the one extra call above; the cache was used
    np.testing.assert_array_equal(again.sigma, first.sigma)
    np.testing.assert_array_equal(again.features, first.features)
    assert again.meta["dataset"] == "toy" and again.meta["resize_mode"] == "tf1"
    assert again.meta["weights_id"] == "w1"


@pytest.mark.parametrize(
    "change",
    [
        {"meta": {"dataset": "toy", "split": "test"}},
        {"extractor": CountingExtractor(resize_mode="pytorch")},
        {"extractor": CountingExtractor(weights_id="w2")},
        {"num_images": 30},
        {"kid_features": 50},
    ],
)
def test_stale_reference_stats_are_recomputed(tmp_path, change):
    path = str(tmp_path / "ref.npz")
    base = {"meta": {"dataset": "toy", "split": "train"}, "extractor": CountingExtractor()}
    stats.reference_stats(iter(_batches(0)), path, **base)
    args = {**base, **change}
    args["extractor"].calls = 0
    result = stats.reference_stats(iter(_batches(1)), path, **args)
    assert args["extractor"].calls == 1
    assert stats.Stats.load(path).num_images == result.num_images


def test_evaluate_images_scores_against_reference(tmp_path):
    ex = CountingExtractor()
    ref = stats.reference_stats(_batches(0), None, {"dataset": "toy"}, ex, kid_features=60)
    same = stats.evaluate_images(_batches(1), ref, ex)
    shifted = stats.evaluate_images(_batches(2, offset=0.4), ref, ex)
    assert same["fid"] < shifted["fid"] and same["kid_mean"] < shifted["kid_mean"]
    assert {"is_mean", "is_std", "kid_std"} <= set(same)
    assert same["num_images"] == 60 and same["resize_mode"] == "tf1"
    expected = scores.fid_from_features(
        ex.extract(_batches(2, offset=0.4)).features, ex.extract(_batches(0)).features
    )
    assert shifted["fid"] == pytest.approx(expected, rel=1e-9)


def test_evaluate_images_adds_prdc_on_equally_many_features():
    ex = CountingExtractor()
    ref = stats.reference_stats(_batches(0), None, {"dataset": "toy"}, ex, kid_features=50)
    result = stats.evaluate_images(_batches(1, n=2), ref, ex)  # 40 generated, 50 real features
    real = ref.features[np.sort(np.random.default_rng(0).choice(50, 40, replace=False))]
    expected = manifold.prdc(real, ex.extract(_batches(1, n=2)).features)
    assert {name: result[name] for name in expected} == expected
    assert result["recall"] > 0 and result["coverage"] > 0

    collapsed = stats.evaluate_images([np.repeat(_batches(1)[0][:1], 40, axis=0)], ref, ex)
    assert collapsed["recall"] == 0.0  # every generated ball has radius 0
    assert collapsed["coverage"] < result["coverage"]


def test_evaluate_images_without_prdc():
    ex = CountingExtractor()
    with_features = stats.reference_stats(_batches(0), None, {}, ex, kid_features=60)
    without = stats.reference_stats(_batches(0), None, {}, ex)
    names = {"precision", "recall", "density", "coverage"}
    assert not names & set(stats.evaluate_images(_batches(1), without, ex))
    assert not names & set(stats.evaluate_images(_batches(1), with_features, ex, prdc=False))
    few = stats.evaluate_images(  # 5 images: too few for PRDC (dc_k=5)
        [_batches(1)[0][:5]], with_features, ex, kid=False, inception_score=False
    )
    assert not names & set(few) and np.isfinite(few["fid"])


def test_fid_refuses_statistics_from_different_settings():
    ex_tf1, ex_pt = CountingExtractor(), CountingExtractor(resize_mode="pytorch")
    a = stats.reference_stats(_batches(0), None, {}, ex_tf1)
    b = stats.reference_stats(_batches(0), None, {}, ex_pt)
    with pytest.raises(ValueError, match="resize_mode"):
        stats.fid(a, b)
    assert stats.fid(a, a) == pytest.approx(0.0, abs=1e-6)
