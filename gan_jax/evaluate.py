"""FID / KID (and IS) of a trained run against its dataset: the evaluation command.

    python -m gan_jax.evaluate --workdir DIR [--num_samples 10000] [--ref train] [--best]

Generates `--num_samples` images from the run's newest (or `--step`, or the best-FID)
checkpoint, compares them with the reference split of the run's dataset (read
through the training input pipeline, so at the training resolution and channel
count) and writes the scores to `<workdir>/eval/step_<step>.json`. Reference
statistics are cached in `--stats_dir` and reused while the dataset, split, image
size, number of images, resize mode and network stay the same. The Inception Score
needs weights with the classifier head, which the default conversion (`default_1.pt`)
does not have.

This module builds the image batches; `gan_jax.metrics` scores them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from absl import flags

from gan_jax import cli, rundir
from gan_jax.errors import GanJaxError
from gan_jax.fid_monitor import ProgressFactory, generated_images, reference_meta, score_generator
from gan_jax.metrics import weights
from gan_jax.metrics.extractor import InceptionExtractor
from gan_jax.metrics.preprocess import RESIZE_MODES
from gan_jax.metrics.scorer import stats_path
from gan_jax.progress import Progress

__all__ = [
    "NO_INCEPTION_SCORE",
    "define_flags",
    "evaluate_generator",
    "evaluate_run",
    "generated_images",
    "main",
    "reference_meta",
    "stats_path",
    "summary_lines",
]

# Why a result has no `is_mean`: the scorer computes IS whenever the weights have logits.
NO_INCEPTION_SCORE = (
    "these Inception weights have no classifier head (the conversion of default_1.pt keeps "
    "the feature layers only); convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
    "for it (docs/evaluation.md)."
)


def read_images(config: Any, **kwargs: Any) -> Iterator[np.ndarray]:
    """`gan_jax.input_pipeline.iterate_images`, imported on the first call: TensorFlow takes
    seconds to load and defines absl flags, which importing this module must not."""
    from gan_jax import input_pipeline

    return input_pipeline.iterate_images(config, **kwargs)


def count_images(config: Any, split: str) -> int:
    """`gan_jax.input_pipeline.split_size`, imported on the first call (as `read_images`)."""
    from gan_jax import input_pipeline

    return input_pipeline.split_size(config, split)


def evaluate_generator(
    g_state: Any,
    config: Any,
    num_samples: int = 10_000,
    ref: str = "train",
    num_ref: int | None = None,
    seed: int = 0,
    extractor: InceptionExtractor | None = None,
    kid_features: int = 10_000,
    stats_dir: str | None = None,
    ema: bool = True,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """Scores a generator state against split `ref` of `config`'s dataset.

    `progress(description, total)`, when given, makes a bar for each long phase as it
    starts: an object with `update(n)` and `close()`, such as `gan_jax.progress.Progress`
    or a tqdm. Cached reference statistics make no bar.
    """
    return score_generator(
        g_state,
        config,
        read_images,
        num_samples=num_samples,
        ref=ref,
        num_ref=num_ref,
        seed=seed,
        extractor=extractor,
        kid_features=kid_features,
        stats_dir=stats_dir,
        ema=ema,
        progress=progress,
        count_images=count_images,
    )


def evaluate_run(
    workdir: str,
    num_samples: int = 10_000,
    ref: str = "train",
    num_ref: int | None = None,
    step: int | None = None,
    seed: int = 0,
    resize: str = "tf1",
    weights_path: str | None = None,
    batch_size: int | None = None,
    kid_features: int = 10_000,
    stats_dir: str | None = None,
    ema: bool = True,
    best: bool = False,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """Scores the newest (or `step`, or the best-FID) checkpoint of the run in `workdir`.

    What the command line writes; `progress` as in `evaluate_generator`.
    """
    run = rundir.load_run(workdir, step, best=best)
    extractor = InceptionExtractor(weights_path, resize_mode=resize, batch_size=batch_size)
    result = evaluate_generator(
        run.g_state,
        run.config,
        num_samples,
        ref,
        num_ref,
        seed,
        extractor,
        kid_features,
        stats_dir or weights.default_stats_dir(weights_path),
        ema,
        progress,
    )
    return {"step": run.step, "checkpoint": "best" if best else "latest", **result}


def define_flags() -> None:
    """Defines the command line's flags (only when run as a program, so that importing
    this module next to another absl program never clashes with its flags)."""
    flags.DEFINE_string(
        "workdir", None, "Training workdir, or a directory written by gan_jax.save_checkpoint."
    )
    flags.DEFINE_integer("num_samples", 10_000, "Generated images to evaluate.")
    flags.DEFINE_string("ref", "train", "Dataset split the reference statistics come from.")
    flags.DEFINE_integer("num_ref", None, "Reference images (default: the whole split).")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
    flags.DEFINE_integer("seed", 0, "Noise seed of the generated images.")
    flags.DEFINE_enum("resize", "tf1", list(RESIZE_MODES), "Resize convention to 299x299.")
    flags.DEFINE_string("weights", None, "Converted Inception weights (default: cache).")
    flags.DEFINE_integer("batch_size", None, "Inception batch size (default: per device).")
    flags.DEFINE_integer(
        "kid_features", 10_000, "Reference features kept for KID (0 disables KID)."
    )
    flags.DEFINE_string(
        "stats_dir", None, "Reference statistics cache (default: next to the Inception weights)."
    )
    flags.DEFINE_string("out", None, "Result JSON (default: <workdir>/eval/step_<step>.json).")
    flags.DEFINE_bool("ema", True, "Use the generator's EMA parameters when the run has them.")
    flags.DEFINE_bool("best", False, "Score the best-FID checkpoint (eval_every_steps runs).")


def main(argv: list[str]) -> None:
    """Scores the run given by the flags (see `define_flags`) and writes the JSON."""
    cli.check_arguments(argv)
    cli.quiet_library_logs()
    f = flags.FLAGS
    cli.require_workdir(f.workdir)
    print(
        f"Scoring {f.workdir}: {f.num_samples} generated images against the {f.ref!r} split "
        "(reference statistics are computed once, then cached in "
        f"{f.stats_dir or weights.default_stats_dir(f.weights)}).",
        flush=True,
    )
    try:
        result = evaluate_run(
            f.workdir,
            f.num_samples,
            f.ref,
            f.num_ref,
            f.step,
            f.seed,
            f.resize,
            f.weights,
            f.batch_size,
            f.kid_features,
            f.stats_dir,
            f.ema,
            f.best,
            progress=Progress,
        )
    except (GanJaxError, FileNotFoundError) as e:
        cli.fail(str(e))
    out = f.out or rundir.eval_path(f.workdir, result["step"], f.best)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as file:
        json.dump(result, file, indent=2)
    print("\n".join(summary_lines(result, out)))


def summary_lines(result: dict[str, Any], out: str) -> list[str]:
    """What the command line prints for `result`: the scores, and why a score is missing."""
    scores = ", ".join(
        f"{k} {result[k]:.4g}" for k in ("fid", "kid_mean", "is_mean") if k in result
    )
    lines = [f"step {result['step']}: {scores} ({result['num_images']} images); wrote {out}"]
    if "is_mean" not in result:
        lines.append(f"No Inception Score: {NO_INCEPTION_SCORE}")
    return lines


if __name__ == "__main__":
    define_flags()
    cli.run(main)
