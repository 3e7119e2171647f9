"""FID / KID / IS arithmetic against independent float64 numpy, scipy and scikit-learn code."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
from sklearn.metrics.pairwise import polynomial_kernel

from gan_jax.metrics import scores


def _correlated(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix + shift).astype(np.float32)


def test_mean_and_covariance_match_numpy():
    f = _correlated(np.random.default_rng(0), 9000, 40, shift=3.0)  # several 4096-row chunks
    mu, sigma = scores.mean_and_covariance(f)
    np.testing.assert_allclose(mu, f.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(f.astype(np.float64), rowvar=False), rtol=1e-10)


def test_fid_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(1)
    a, b = _correlated(rng, 3000, 64), _correlated(rng, 2500, 64, shift=0.3)
    mu1, s1 = a.mean(0, dtype=np.float64), np.cov(a.astype(np.float64), rowvar=False)
    mu2, s2 = b.mean(0, dtype=np.float64), np.cov(b.astype(np.float64), rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    assert np.max(np.abs(np.imag(covmean))) < 1e-8
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2.0 * np.real(covmean))
    got = scores.fid_from_features(a, b)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got > 1.0


def test_fid_of_diagonal_gaussians_has_closed_form():
    rng = np.random.default_rng(2)
    v1, v2 = rng.uniform(0.1, 4.0, 32), rng.uniform(0.1, 4.0, 32)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = scores.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n", [3000, 300])  # 300 < 512 features: a singular covariance
def test_fid_of_a_set_with_itself_is_zero(n):
    f = np.abs(_correlated(np.random.default_rng(3), n, 512))  # ReLU-like features
    mu, sigma = scores.mean_and_covariance(f)
    assert abs(scores.frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)
    assert scores.fid_from_features(f, f[::-1]) == pytest.approx(0.0, abs=1e-6 * np.trace(sigma))


def test_fid_rejects_mismatched_statistics():
    with pytest.raises(ValueError, match="same network"):
        scores.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = polynomial_kernel(x, x, degree=3, gamma=1.0 / d, coef0=1.0)
    kyy = polynomial_kernel(y, y, degree=3, gamma=1.0 / d, coef0=1.0)
    kxy = polynomial_kernel(x, y, degree=3, gamma=1.0 / d, coef0=1.0)
    m = len(x)
    off = ~np.eye(m, dtype=bool)
    return kxx[off].mean() + kyy[off].mean() - 2.0 * kxy.mean()


def test_kid_matches_unbiased_mmd_with_polynomial_kernel():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 16)).astype(np.float64)
    y = rng.normal(size=(200, 16)) * 1.3 + 0.2
    # One subset holding every row: a permutation, which the MMD does not see.
    mean, std = scores.kernel_inception_distance(x, y, num_subsets=1, subset_size=1000)
    assert mean == pytest.approx(_mmd2_unbiased(x, y), rel=1e-9)
    assert std == 0.0
    assert mean > 0.0


def test_kid_subsets_average_subset_mmds_and_same_distribution_is_near_zero():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(600, 8)), rng.normal(size=(500, 8))
    mean, std = scores.kernel_inception_distance(x, y, num_subsets=20, subset_size=100, seed=7)
    draws = np.random.default_rng(7)
    expected = []
    for _ in range(20):
        xi = x[draws.choice(600, 100, replace=False)]
        yi = y[draws.choice(500, 100, replace=False)]
        expected.append(_mmd2_unbiased(xi, yi))
    assert mean == pytest.approx(np.mean(expected), rel=1e-9)
    assert std == pytest.approx(np.std(expected), rel=1e-9)
    assert abs(mean) < 3 * std + 1e-3  # unbiased: no systematic offset for equal distributions


def _inception_score_reference(logits: np.ndarray, splits: int) -> tuple[float, float]:
    p = scipy.special.softmax(logits.astype(np.float64), axis=1)
    values = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0)
        values.append(np.exp(np.mean([scipy.stats.entropy(row, py) for row in part])))
    return float(np.mean(values)), float(np.std(values))


def test_inception_score_matches_reference():
    logits = np.random.default_rng(6).normal(size=(500, 1008)) * 4
    got = scores.inception_score(logits, num_splits=10)
    expected = _inception_score_reference(logits, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert got[0] > 2.0


def test_inception_score_bounds():
    confident_uniform = np.eye(10)[np.arange(1000) % 10] * 60.0  # one class each, all classes
    assert scores.inception_score(confident_uniform, 10)[0] == pytest.approx(10.0, rel=1e-6)
    one_class = np.zeros((100, 10))
    one_class[:, 3] = 60.0
    assert scores.inception_score(one_class, 10)[0] == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="splits"):
        scores.inception_score(np.zeros((5, 10)), num_splits=10)
