"""Precision, recall, density and coverage: fidelity and diversity as separate numbers.

FID folds both into one distance; these four tell a generator that makes a few good
images (mode collapse: precision high, recall and coverage low) from one that spreads
over everything but blurs it (recall high, precision low). All four compare Inception
pool features (the same (N, 2048) features as FID) through k-nearest-neighbour balls:
each point's ball has as radius the distance to its k-th nearest neighbour in its own set.

* precision / recall (Kynkäänniemi et al. 2019, k = 3): the fraction of generated
  points inside some real ball / of real points inside some generated ball.
* density / coverage (Naeem et al. 2020, k = 5): real balls only, which outliers in the
  generated set cannot inflate. Density: the number of real balls holding a generated
  point, averaged over generated points and divided by k (about 1 when both sets come
  from one distribution; above 1 when the generated points crowd where the reals are
  dense). Coverage: the fraction of real balls holding at least one generated point.

The definitions match the `prdc` package of Naeem et al. (`prdc.compute_prdc`; the tests
compare with it): Euclidean distances; the k-th neighbour radius is the (k+1)-th smallest
distance to the point's own set counting the point itself (so a duplicate counts as a
neighbour); "inside" is strictly closer than the radius. `compute_prdc` takes one k for all
four; the `prdc` function here takes `pr_k` and `dc_k` (the papers' 3 and 5 by default), so
`compute_prdc(real, fake, k)` is `prdc(real, fake, k, k)`. (This module is not named prdc so
that `gan_jax.metrics.prdc` is that function.)

Distances are computed in float64, `block_size` rows against the whole other set at a time,
and reduced at once, so memory is O(block_size x N), never N x N. Three passes (real-real,
fake-fake, real-fake) of one (N, D) x (D, N) product each: for 10k x 10k features of 2048
dimensions about 1.2e12 flops, 80 MB per block of 1024 rows, plus float64 copies of the
sets (160 MB each).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from gan_jax.errors import FeatureError

PR_K = 3  # Kynkäänniemi et al. 2019.
DC_K = 5  # Naeem et al. 2020.
BLOCK_SIZE = 1024


def _features(x: object, name: str) -> np.ndarray:
    try:
        f = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise FeatureError(f"{name} features must be a numeric (N, D) array.") from None
    if f.ndim != 2:
        raise FeatureError(
            f"{name} features must be (N, D), one row per image; got shape {f.shape}."
        )
    if not np.isfinite(f).all():
        raise FeatureError(f"{name} features contain NaN or infinity; check the images.")
    return f


def _check_k(k: int, name: str, sizes: dict[str, int]) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise FeatureError(f"{name} must be a positive integer, got {k!r}.")
    for set_name, n in sizes.items():
        if k >= n:
            raise FeatureError(
                f"{name}={k} needs more than {k} {set_name} features, got {n}; "
                f"evaluate more images or lower {name}."
            )


def _validated(
    real: object,
    fake: object,
    pr_k: int | None,
    dc_k: int | None,
    block_size: int,
    names: tuple[str, str] = ("pr_k", "dc_k"),
) -> tuple[np.ndarray, np.ndarray]:
    real_f, fake_f = _features(real, "real"), _features(fake, "fake")
    if real_f.shape[1] != fake_f.shape[1]:
        raise FeatureError(
            f"real and fake features differ in dimension ({real_f.shape[1]} vs "
            f"{fake_f.shape[1]}); compute both with the same network and layer."
        )
    if len(fake_f) == 0:
        raise FeatureError("fake features are empty; evaluate at least one generated image.")
    if pr_k is not None:
        _check_k(pr_k, names[0], {"real": len(real_f), "fake": len(fake_f)})
    if dc_k is not None:
        _check_k(dc_k, names[1], {"real": len(real_f)})
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
        raise FeatureError(f"block_size must be a positive integer, got {block_size!r}.")
    if block_size < 1:
        raise FeatureError(f"block_size must be a positive integer, got {block_size!r}.")
    return real_f, fake_f


def _distance_blocks(
    x: np.ndarray, y: np.ndarray, block_size: int, same: bool = False
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, distances of x[start:stop] to all of y), one row block at a time.

    The order of operations (-2 x.y + |x|^2 + |y|^2, clipped at 0, diagonal 0 within one
    set, square root) is the one `prdc` gets from scikit-learn, so the comparisons with
    the radii come out the same.
    """
    x_sq = np.einsum("ij,ij->i", x, x)
    y_sq = x_sq if same else np.einsum("ij,ij->i", y, y)
    for start in range(0, len(x), block_size):
        stop = min(start + block_size, len(x))
        d = x[start:stop] @ y.T
        d *= -2.0
        d += x_sq[start:stop, None]
        d += y_sq[None, :]
        np.maximum(d, 0.0, out=d)
        if same:
            rows = np.arange(stop - start)
            d[rows, rows + start] = 0.0
        np.sqrt(d, out=d)
        yield start, stop, d


def _radii(x: np.ndarray, ks: set[int], block_size: int) -> dict[int, np.ndarray]:
    """Distance from each row of x to its k-th nearest other row, for each k in ks."""
    radii = {k: np.empty(len(x)) for k in ks}
    kth = sorted(ks)  # Index k of a row sorted with itself (0) first: the k-th other row.
    for start, stop, d in _distance_blocks(x, x, block_size, same=True):
        d.partition(kth, axis=1)
        for k in ks:
            radii[k][start:stop] = d[:, k]
    return radii


def _compute(
    real: np.ndarray, fake: np.ndarray, pr_k: int | None, dc_k: int | None, block_size: int
) -> dict[str, float]:
    ks = {k for k in (pr_k, dc_k) if k is not None}
    real_radii = _radii(real, ks, block_size)
    fake_radius = _radii(fake, {pr_k}, block_size)[pr_k] if pr_k is not None else None
    in_real_manifold = np.zeros(len(fake), bool)  # Fake inside some real pr_k-ball.
    in_fake_manifold = np.zeros(len(real), bool)  # Real inside some fake pr_k-ball.
    balls_holding = np.zeros(len(fake), np.int64)  # Real dc_k-balls holding each fake.
    covered = np.zeros(len(real), bool)  # Real dc_k-ball holding some fake.
    for start, stop, d in _distance_blocks(real, fake, block_size):
        if pr_k is not None:
            in_real_manifold |= (d < real_radii[pr_k][start:stop, None]).any(axis=0)
            in_fake_manifold[start:stop] = (d < fake_radius[None, :]).any(axis=1)
        if dc_k is not None:
            radius = real_radii[dc_k][start:stop]
            balls_holding += (d < radius[:, None]).sum(axis=0)
            covered[start:stop] = d.min(axis=1) < radius
    result = {}
    if pr_k is not None:
        result["precision"] = float(in_real_manifold.mean())
        result["recall"] = float(in_fake_manifold.mean())
    if dc_k is not None:
        result["density"] = float(balls_holding.mean() / dc_k)
        result["coverage"] = float(covered.mean())
    return result


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = PR_K, block_size: int = BLOCK_SIZE
) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of `fake` against `real`.

    Args:
      real, fake: (N, D) features (e.g. Inception pool features), any N each; more than
        `k` rows in both.
      k: the neighbour whose distance is a point's radius.
      block_size: rows of distances computed at a time (memory: block_size x N float64).

    Example:
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> rng = np.random.default_rng(0)
      >>> real = rng.normal(size=(300, 4))
      >>> metrics.precision_recall(real, real)  # identical sets
      {'precision': 1.0, 'recall': 1.0}
      >>> collapsed = real[real[:, 0] > 1.0]  # only one corner of the real distribution
      >>> pr = metrics.precision_recall(real, collapsed)
      >>> pr["precision"], pr["recall"] < 0.5
      (1.0, True)
    """
    real_f, fake_f = _validated(real, fake, k, None, block_size, names=("k", "k"))
    return _compute(real_f, fake_f, k, None, block_size)


def density_coverage(
    real: np.ndarray, fake: np.ndarray, k: int = DC_K, block_size: int = BLOCK_SIZE
) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020) of `fake` against `real`.

    Args:
      real, fake: (N, D) features, any N each; `real` needs more than `k` rows.
      k: the neighbour whose distance is a real point's radius.
      block_size: rows of distances computed at a time (memory: block_size x N float64).

    Example:
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> rng = np.random.default_rng(0)
      >>> real = rng.normal(size=(300, 4))
      >>> dc = metrics.density_coverage(real, real)  # identical sets
      >>> dc  # a ball holds its centre and the k - 1 nearer neighbours: k fakes per ball
      {'density': 1.0, 'coverage': 1.0}
      >>> dc = metrics.density_coverage(real, real[real[:, 0] > 1.0])
      >>> dc["coverage"] < 0.5
      True
    """
    real_f, fake_f = _validated(real, fake, None, k, block_size, names=("k", "k"))
    return _compute(real_f, fake_f, None, k, block_size)


def prdc(
    real: np.ndarray,
    fake: np.ndarray,
    pr_k: int = PR_K,
    dc_k: int = DC_K,
    block_size: int = BLOCK_SIZE,
) -> dict[str, float]:
    """Precision, recall (with `pr_k`), density and coverage (with `dc_k`) in one pass.

    Shares the distance computations of `precision_recall` and `density_coverage`, which
    it equals. `prdc.compute_prdc(real, fake, nearest_k=k)` is `prdc(real, fake, k, k)`.

    Example:
      >>> import numpy as np
      >>> from gan_jax import metrics
      >>> rng = np.random.default_rng(0)
      >>> real, fake = rng.normal(size=(300, 4)), rng.normal(size=(200, 4))
      >>> scores = metrics.prdc(real, fake)
      >>> sorted(scores)
      ['coverage', 'density', 'precision', 'recall']
      >>> scores == {**metrics.precision_recall(real, fake), **metrics.density_coverage(real, fake)}
      True
    """
    real_f, fake_f = _validated(real, fake, pr_k, dc_k, block_size)
    return _compute(real_f, fake_f, pr_k, dc_k, block_size)
