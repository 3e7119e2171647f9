"""FID / KID (and IS) of a trained run against its dataset.

    python -m gan_jax.evaluate --workdir DIR [--num_samples 10000] [--ref train]

Generates `--num_samples` images from the run's newest (or `--step`) checkpoint,
compares them with the reference split of the run's dataset (read through the
training input pipeline, so at the training resolution and channel count) and
writes the scores to `<workdir>/eval/step_<step>.json`. Reference statistics are
cached in `--stats_dir` and reused while the dataset, split, image size, number of
images, resize mode and network stay the same. The Inception Score needs weights with
the classifier head, which the default conversion (`default_1.pt`) does not have.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from absl import flags, logging

from gan_jax.metrics import stats, weights
from gan_jax.metrics.extractor import InceptionExtractor
from gan_jax.metrics.preprocess import RESIZE_MODES

# Why a result has no `is_mean`: the scorer computes IS whenever the weights have logits.
NO_INCEPTION_SCORE = (
    "these Inception weights have no classifier head (the conversion of default_1.pt keeps "
    "the feature layers only); convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
    "for it (docs/evaluation.md)."
)


def generated_batches(
    g_state: Any, num: int, seed: int, batch_size: int = 250, ema: bool = True
) -> Iterator[np.ndarray]:
    """`num` generator images in [-1, 1], NHWC, in batches; the same seed gives the same images.

    With `ema` the generator's moving-average parameters are used when the run has them.
    A class-conditional generator makes every class equally often (labels cycle).
    """
    from gan_jax.step import balanced_labels, sample_latent

    params = g_state.ema_params if ema and g_state.ema_params is not None else g_state.params
    classes = g_state.spec.num_classes

    @jax.jit
    def gen(params: Any, rng: jax.Array, offset: jax.Array) -> jax.Array:
        z = sample_latent(rng, batch_size, g_state.spec.latent_dim)
        kwargs = {"labels": balanced_labels(batch_size, classes, offset)} if classes else {}
        return g_state.model.apply(g_state.variables(params), z, train=False, **kwargs)

    key = jax.random.key(seed)
    for i, start in enumerate(range(0, num, batch_size)):
        yield np.asarray(gen(params, jax.random.fold_in(key, i), start))[: num - start]


def reference_meta(config: Any, split: str) -> dict[str, Any]:
    """What identifies the real images: the dataset as the input pipeline delivers it."""
    return {
        "dataset": config.dataset,
        "split": split,
        "image_size": config.image_size,
        "channels": config.channels,
    }


def stats_path(stats_dir: str, meta: dict[str, Any], resize: str, num_ref: int | None) -> str:
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
    progress: Callable[[str, int | None], Any] | None = None,
) -> dict[str, Any]:
    """Scores a generator state against split `ref` of `config`'s dataset.

    `progress(description, total)`, when given, makes a bar for each long phase: an
    object with `update(n)` and `close()`, such as `gan_jax.progress.Progress` or a
    tqdm. The reference statistics' bar only moves when they are not cached.
    """
    from gan_jax import input_pipeline

    extractor = extractor or InceptionExtractor()
    meta = reference_meta(config, ref)
    stats_dir = stats_dir or weights.default_stats_dir()
    bars = []
    if progress is not None:
        available = input_pipeline.split_size(config, ref)
        total = available if num_ref is None else min(num_ref, available)
        bars = [progress("Reference statistics", total), progress("Generated images", num_samples)]
    updates = [bar.update for bar in bars] or [None, None]
    try:
        t0 = time.time()
        reference = stats.reference_stats(
            input_pipeline.iterate_images(config, split=ref, num_examples=num_ref),
            stats_path(stats_dir, meta, extractor.resize_mode, num_ref),
            meta,
            extractor,
            num_images=num_ref,
            kid_features=kid_features,
            progress=updates[0],
        )
        if bars:
            bars[0].close()
        t1 = time.time()
        result = stats.evaluate_images(
            generated_batches(g_state, num_samples, seed, ema=ema),
            reference,
            extractor,
            num_samples,
            progress=updates[1],
        )
    finally:
        for bar in bars:
            bar.close()
    result.update(
        ema=bool(ema and g_state.ema_params is not None),
        reference={**meta, "num_images": reference.num_images},
        seconds={"reference": round(t1 - t0, 1), "generated": round(time.time() - t1, 1)},
    )
    return result


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
    progress: Callable[[str, int | None], Any] | None = None,
) -> dict[str, Any]:
    """Scores the newest (or `step`, or the best-FID) checkpoint of the run in `workdir`.

    What the command line writes; `progress` as in `evaluate_generator`.
    """
    from gan_jax.runs import load_run

    run = load_run(workdir, step, best=best)
    extractor = InceptionExtractor(weights_path, resize_mode=resize, batch_size=batch_size)
    stats_dir = stats_dir or weights.default_stats_dir(weights_path)
    result = evaluate_generator(
        run.g_state,
        run.config,
        num_samples,
        ref,
        num_ref,
        seed,
        extractor,
        kid_features,
        stats_dir,
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
    del argv
    FLAGS = flags.FLAGS
    if not flags.FLAGS["verbosity"].present:
        from gan_jax.trainer import quiet_library_logs

        logging.set_verbosity(logging.WARNING)
        quiet_library_logs()
    if FLAGS.workdir is None:
        print("error: --workdir is required (the directory given to train.py).", file=sys.stderr)
        sys.exit(2)
    from gan_jax.errors import GanJaxError
    from gan_jax.progress import Progress

    print(
        f"Scoring {FLAGS.workdir}: {FLAGS.num_samples} generated images against the "
        f"{FLAGS.ref!r} split (reference statistics are computed once, then cached in "
        f"{FLAGS.stats_dir or weights.default_stats_dir(FLAGS.weights)}).",
        flush=True,
    )
    try:
        result = evaluate_run(
            FLAGS.workdir,
            FLAGS.num_samples,
            FLAGS.ref,
            FLAGS.num_ref,
            FLAGS.step,
            FLAGS.seed,
            FLAGS.resize,
            FLAGS.weights,
            FLAGS.batch_size,
            FLAGS.kid_features,
            FLAGS.stats_dir,
            FLAGS.ema,
            FLAGS.best,
            progress=Progress,
        )
    except (GanJaxError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    name = f"{'best_' if FLAGS.best else ''}step_{result['step']}.json"
    out = FLAGS.out or os.path.join(FLAGS.workdir, "eval", name)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
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
    from gan_jax import console

    define_flags()
    console.run(main)
