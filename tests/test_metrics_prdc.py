"""Precision, recall, density and coverage: the authors' `prdc` package, the textbook cases,
and the errors for features that do not fit."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from gan_jax import metrics
from gan_jax.errors import FeatureError, GanJaxError

reference = pytest.importorskip("prdc")


def _reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the set sizes
        return {name: float(v) for name, v in reference.compute_prdc(real, fake, k).items()}


def _features(seed: int, n_real: int, n_fake: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping but different sets, so that no score is trivially 0 or 1."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_real, dim))
    fake = rng.normal(size=(n_fake, dim)) + 0.6
    return real, fake


@pytest.mark.parametrize(
    "n_real, n_fake, block_size",
    [(60, 60, 1024), (45, 80, 7), (90, 33, 16), (64, 64, 64), (50, 40, 1)],
)
@pytest.mark.parametrize("k", [3, 5])
def test_matches_the_prdc_package(n_real, n_fake, block_size, k):
    real, fake = _features(n_real * 1000 + n_fake, n_real, n_fake, dim=6)
    ours = metrics.prdc(real, fake, pr_k=k, dc_k=k, block_size=block_size)
    theirs = _reference_prdc(real, fake, k)
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert all(0.0 < theirs[name] < 1.0 for name in ("precision", "recall", "coverage"))
    assert ours == {
        **metrics.precision_recall(real, fake, k, block_size),
        **metrics.density_coverage(real, fake, k, block_size),
    }


def test_matches_the_prdc_package_with_duplicates():
    """A duplicate of a point counts as one of its neighbours, as in `prdc`."""
    real, fake = _features(1, 70, 50, dim=4)
    real = np.concatenate([real, real[:20], real[:5]])
    fake = np.concatenate([fake, fake[:10], real[:3]])
    for k in (3, 5):
        assert metrics.prdc(real, fake, k, k, block_size=16) == pytest.approx(
            _reference_prdc(real, fake, k), abs=1e-6
        )


def test_block_size_does_not_change_the_scores():
    real, fake = _features(2, 77, 41, dim=5)
    results = [metrics.prdc(real, fake, block_size=b) for b in (1, 6, 41, 77, 1000)]
    assert all(r == results[0] for r in results)


def test_float32_features_give_the_float64_scores():
    real, fake = _features(3, 80, 60, dim=8)
    real, fake = real.astype(np.float32), fake.astype(np.float32)
    expected = metrics.prdc(real.astype(np.float64), fake.astype(np.float64))
    assert metrics.prdc(real, fake) == expected


def test_identical_sets():
    real = np.random.default_rng(4).normal(size=(150, 10))
    scores = metrics.prdc(real, real.copy(), block_size=32)
    assert scores["precision"] == scores["recall"] == scores["coverage"] == 1.0
    # Each real ball holds its centre and its dc_k - 1 nearer neighbours: dc_k fakes each.
    assert scores["density"] == pytest.approx(1.0, abs=1e-12)


def _modes(rng: np.random.Generator, n: int, modes: list[int], dim: int = 4) -> np.ndarray:
    centres = 12.0 * np.eye(dim)[modes]
    return centres[rng.integers(len(modes), size=n)] + rng.normal(size=(n, dim))


def test_a_collapsed_generator_has_high_precision_and_low_recall_and_coverage():
    rng = np.random.default_rng(5)
    real = _modes(rng, 400, [0, 1, 2, 3])
    collapsed = metrics.prdc(real, _modes(rng, 400, [0]))
    healthy = metrics.prdc(real, _modes(rng, 400, [0, 1, 2, 3]))
    assert collapsed["precision"] > 0.8 and healthy["precision"] > 0.8
    assert collapsed["recall"] < 0.4 < 0.8 < healthy["recall"]
    assert collapsed["coverage"] < 0.35 < 0.8 < healthy["coverage"]


def _ok(n: int = 20, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(n).normal(size=(n, dim))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.prdc(_ok().ravel(), _ok()), r"real features must be \(N, D\).*\(80,\)"),
        (lambda: metrics.prdc(_ok(), _ok()[None]), r"fake features must be \(N, D\)"),
        (lambda: metrics.prdc(_ok(), _ok(dim=5)), r"differ in dimension \(4 vs 5\)"),
        (lambda: metrics.prdc(_ok(5), _ok()), r"dc_k=5 needs more than 5 real features, got 5"),
        (lambda: metrics.prdc(_ok(), _ok(3)), r"pr_k=3 needs more than 3 fake features, got 3"),
        (lambda: metrics.precision_recall(_ok(), _ok(), k=20), r"k=20 needs more than 20 real"),
        (lambda: metrics.density_coverage(_ok(), _ok(), k=0), r"^k must be a positive"),
        (lambda: metrics.prdc(_ok(), _ok()[:0]), r"fake features are empty"),
        (lambda: metrics.prdc(_ok(), _ok() * np.nan), r"fake features contain NaN"),
        (lambda: metrics.prdc(_ok(), _ok(), block_size=0), r"block_size must be a positive"),
        (lambda: metrics.prdc(_ok(), [["a"] * 4] * 20), r"fake features must be a numeric"),
    ],
)
def test_bad_input_is_one_clear_line(call, message):
    with pytest.raises(FeatureError, match=message) as info:
        call()
    assert isinstance(info.value, GanJaxError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_density_coverage_needs_only_one_generated_image():
    real = _ok(30)
    fake = real[:1] + 0.1
    distances = np.linalg.norm(real[:, None] - real[None], axis=-1)
    radii = np.sort(distances, axis=1)[:, 5]
    inside = np.linalg.norm(real - fake, axis=1) < radii
    scores = metrics.density_coverage(real, fake)
    assert scores["coverage"] == pytest.approx(inside.mean()) and inside.sum() >= 1
    assert scores["density"] == pytest.approx(inside.sum() / 5)
