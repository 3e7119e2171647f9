"""FID, KID and Inception Score from Inception activations, in float64 numpy.

* FID (Heusel et al. 2017): ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).
  Tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the
  symmetric PSD matrix S1^(1/2) S2 S1^(1/2) (same eigenvalues as S1 S2). Unlike a general
  matrix square root (scipy.linalg.sqrtm, as in pytorch-fid) this stays real and stable
  when the covariances are singular (fewer images than 2048 features) and needs no
  offset to the diagonal.
* KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3,
  averaged over random subsets, as in StyleGAN2-ADA (100 subsets of at most 1000).
* Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) over 10 splits,
  softmax over all 1008 logits.
"""

from __future__ import annotations

import numpy as np


def mean_and_covariance(features_NxD: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased (ddof=1, as np.cov and pytorch-fid) covariance in float64.

    Example:
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> mu, sigma = metrics.mean_and_covariance(np.array([[0, 1], [2, 3], [4, 5]]))
      >>> mu, sigma
      (array([2., 3.]), array([[4., 4.], [4., 4.]]))
    """
    f = np.asarray(features_NxD)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {f.shape}; evaluate more images.")
    n, d = f.shape
    chunk = 4096
    mu = np.zeros(d, np.float64)
    for i in range(0, n, chunk):
        mu += f[i : i + chunk].astype(np.float64).sum(axis=0)
    mu /= n
    scatter = np.zeros((d, d), np.float64)
    for i in range(0, n, chunk):
        centred = f[i : i + chunk].astype(np.float64) - mu
        scatter += centred.T @ centred
    return mu, scatter / (n - 1)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2."""
    root1 = _psd_sqrt(sigma1)
    m = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    Example:
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> # N(0, I) vs N((3, 4), 4I): |mu1 - mu2|^2 + Tr(I + 4I - 2 * 2I) = 25 + 2
      >>> d = metrics.frechet_distance(np.zeros(2), np.eye(2), np.array([3.0, 4.0]), 4 * np.eye(2))
      >>> round(d, 6)
      27.0
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"statistics differ in shape ({mu1.shape}/{sigma1.shape} vs {mu2.shape}/"
            f"{sigma2.shape}); compute both with the same network and feature layer."
        )
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets (N, D).

    Example:
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> features = np.random.default_rng(0).normal(size=(200, 8))
      >>> round(metrics.fid_from_features(features, features + 1.0), 6)  # shift: |1|^2 * 8
      8.0
    """
    return frechet_distance(*mean_and_covariance(features1), *mean_and_covariance(features2))


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (mean, std over subsets) between two feature sets (N, D).

    Each subset draws min(subset_size, N1, N2) rows of each set without replacement.

    Example:
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> rng = np.random.default_rng(0)
      >>> x, y = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
      >>> same, _ = metrics.kernel_inception_distance(x, y, num_subsets=10, subset_size=100)
      >>> shifted, _ = metrics.kernel_inception_distance(x, y + 1, num_subsets=10, subset_size=100)
      >>> round(same, 2), round(shifted, 1)  # ~0 for one distribution
      (-0.02, 7.0)
    """
    x_all = np.asarray(features1, np.float64)
    y_all = np.asarray(features2, np.float64)
    m = min(subset_size, len(x_all), len(y_all))
    if m < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {m}; evaluate more images.")
    d = x_all.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets, np.float64)
    for i in range(num_subsets):
        x = x_all[rng.choice(len(x_all), m, replace=False)]
        y = y_all[rng.choice(len(y_all), m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[i] = within - 2.0 * kxy.mean()
    return float(values.mean()), float(values.std())


def inception_score(logits_NxK: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """Inception Score (mean, std over `num_splits` consecutive splits) from classifier logits.

    Example:
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> metrics.inception_score(np.zeros((20, 5)))  # no confident prediction: IS = 1
      (1.0, 0.0)
      >>> confident = 20.0 * np.eye(5)[np.arange(50) % 5]  # each split has all 5 classes
      >>> mean, std = metrics.inception_score(confident)
      >>> round(mean, 3), round(std, 3)
      (5.0, 0.0)
    """
    z = np.asarray(logits_NxK, np.float64)
    n = len(z)
    if n < num_splits:
        raise ValueError(f"{n} images for {num_splits} splits; evaluate at least one per split.")
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    scores = []
    for i in range(num_splits):
        part = log_p[i * n // num_splits : (i + 1) * n // num_splits]
        log_marginal = np.log(np.exp(part).mean(axis=0))
        kl = np.sum(np.exp(part) * (part - log_marginal), axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
