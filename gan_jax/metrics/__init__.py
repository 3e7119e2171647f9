"""FID, KID, Inception Score, precision/recall and density/coverage from the FID Inception-v3.

    from gan_jax import metrics

    extractor = metrics.InceptionExtractor()             # converted weights, "tf1" resize
    ref = metrics.reference_stats(real_batches, "ref.npz", {"dataset": "cifar10"}, extractor)
    result = metrics.evaluate_images(fake_batches, ref, extractor, num_images=10_000)
    # or both in one call, the reference statistics cached in `stats_dir`:
    result = metrics.score_images(fake_batches, real_batches, {"dataset": "cifar10", ...},
                                  extractor=extractor, stats_dir="fid_stats")

The package takes image batches and imports nothing else of gan_jax (but its errors):
`python -m gan_jax.evaluate` builds the batches from a run and its dataset.

Weights: `python -m gan_jax.metrics.convert` once (see docs/evaluation.md).
"""

from gan_jax.metrics.extractor import Activations, InceptionExtractor
from gan_jax.metrics.inception import FEATURE_DIM, NUM_CLASSES, InceptionV3
from gan_jax.metrics.manifold import density_coverage, prdc, precision_recall
from gan_jax.metrics.preprocess import RESIZE_MODES, resize_bilinear, to_inception_input
from gan_jax.metrics.scorer import score_images, stats_path
from gan_jax.metrics.scores import (
    fid_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mean_and_covariance,
)
from gan_jax.metrics.stats import (
    Stats,
    evaluate_images,
    fid,
    reference_stats,
    stats_from_activations,
)
from gan_jax.metrics.weights import default_weights_path, load_weights

__all__ = [
    "FEATURE_DIM",
    "NUM_CLASSES",
    "RESIZE_MODES",
    "Activations",
    "InceptionExtractor",
    "InceptionV3",
    "Stats",
    "default_weights_path",
    "density_coverage",
    "evaluate_images",
    "fid",
    "fid_from_features",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "load_weights",
    "mean_and_covariance",
    "prdc",
    "precision_recall",
    "reference_stats",
    "resize_bilinear",
    "score_images",
    "stats_from_activations",
    "stats_path",
    "to_inception_input",
]
