"""FID of a generator state: its images, its scores, and the evaluation during training.

GAN quality often peaks before the end of training, so besides the newest
checkpoints the trainer keeps the state with the lowest FID so far in
`<workdir>/checkpoints_best/` (one checkpoint; its metadata holds the score).
Every evaluation is appended to `<workdir>/eval/history.jsonl`, one JSON record per
line: `step`, `fid`, `kid_mean`/`kid_std`, `precision`/`recall`/`density`/`coverage`
(against the cached reference features), `num_images`, `eval_seconds`, and
`train_seconds` (training wall-clock so far, evaluations excluded) when the caller
passes it. The generated images come from the same noise at every evaluation (the
run's seed), so the scores of one run are comparable with each other.
`python -m gan_jax.evaluate` scores a finished run with the same functions.

The real images come from a function with the signature of
`gan_jax.input_pipeline.iterate_images`, passed in by the caller, so that this
module needs no TensorFlow until one is read.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from gan_jax import checkpoint, progress, rundir
from gan_jax.errors import ConfigError
from gan_jax.metrics import extractor as inception
from gan_jax.metrics import preprocess, weights
from gan_jax.metrics.scorer import score_images
from gan_jax.state import TrainState
from gan_jax.step import balanced_labels, generate_from_latent, sample_latent

# `read_images(config, split=..., num_examples=...)`: batches of a split in [-1, 1].
ReadImages = Callable[..., Iterable[np.ndarray]]
# `count_images(config, split)`: the examples in a split (`input_pipeline.split_size`).
CountImages = Callable[[ml_collections.ConfigDict, str], int]
# `progress(description, total)`: a bar for one phase, an object with `update(n)` and
# `close()`, such as `gan_jax.progress.Progress` or a tqdm.
ProgressFactory = Callable[[str, int | None], Any]

_generate = jax.jit(generate_from_latent, static_argnames="use_ema")

# Result entries logged to TensorBoard, under these names.
TENSORBOARD_SCALARS = {
    "fid": "fid",
    "kid_mean": "kid",
    "precision": "precision",
    "recall": "recall",
    "density": "density",
    "coverage": "coverage",
}


def tensorboard_scalars(result: dict[str, Any]) -> dict[str, float]:
    """The scalars of an evaluation result to log: FID, KID and PRDC where present."""
    return {name: float(result[key]) for key, name in TENSORBOARD_SCALARS.items() if key in result}


def weights_path(config: ml_collections.ConfigDict) -> str:
    """The Inception weights file evaluations read (`config.inception_weights` or the default)."""
    return config.inception_weights or weights.default_weights_path()


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError when periodic evaluation is on but cannot run (cheap checks only)."""
    every = config.eval_every_steps
    if not every:
        return
    k = config.steps_per_dispatch
    if every < 0 or every % k:
        raise ConfigError(
            f"eval_every_steps={every} must be a positive multiple of steps_per_dispatch={k} "
            f"(or 0 to disable); e.g. --config.eval_every_steps={max(k, every // k * k)}."
        )
    if config.eval_num_samples < 2 or config.eval_num_ref < 0 or config.eval_num_ref == 1:
        raise ConfigError(
            f"eval_num_samples={config.eval_num_samples} and eval_num_ref="
            f"{config.eval_num_ref} must be at least 2 (eval_num_ref=0: the whole split)."
        )
    try:
        preprocess.check_resize_mode(config.eval_resize)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    path = weights_path(config)
    if not os.path.exists(path):
        raise ConfigError(
            f"eval_every_steps={every} needs the FID Inception weights, and there are none "
            f"at {path}: {weights.HOW_TO_GET} (or set --config.eval_every_steps=0)."
        )


def generated_images(
    g_state: TrainState, num: int, seed: int, batch_size: int = 250, ema: bool = True
) -> Iterator[np.ndarray]:
    """`num` generator images in [-1, 1], NHWC, in batches; the same seed gives the same images.

    With `ema` the generator's moving-average parameters are used when the run has them.
    A class-conditional generator makes every class equally often (labels cycle).
    """
    key = jax.random.key(seed)
    classes = g_state.spec.num_classes
    for i, start in enumerate(range(0, num, batch_size)):
        z = sample_latent(jax.random.fold_in(key, i), batch_size, g_state.spec.latent_dim)
        labels = balanced_labels(batch_size, classes, start) if classes else None
        batch = _generate(g_state, z, use_ema=ema, labels=labels)
        yield np.asarray(batch)[: num - start]


def reference_meta(config: ml_collections.ConfigDict, split: str) -> dict[str, Any]:
    """What identifies the real images: the dataset as the input pipeline delivers it."""
    return {
        "dataset": config.dataset,
        "split": split,
        "image_size": config.image_size,
        "channels": config.channels,
    }


def score_generator(
    g_state: TrainState,
    config: ml_collections.ConfigDict,
    read_images: ReadImages,
    *,
    num_samples: int = 10_000,
    ref: str = "train",
    num_ref: int | None = None,
    seed: int = 0,
    extractor: inception.InceptionExtractor | None = None,
    kid_features: int = 10_000,
    stats_dir: str | None = None,
    ema: bool = True,
    progress: ProgressFactory | None = None,
    count_images: CountImages | None = None,
) -> dict[str, Any]:
    """Scores a generator state against split `ref` of `config`'s dataset (`metrics.score_images`).

    `read_images` reads the real images (`gan_jax.input_pipeline.iterate_images`); it
    is called only when the reference statistics are not cached in `stats_dir`
    (default: `fid_stats/` beside the default weights). `progress`, when given, makes
    a bar for each phase as its work starts, so cached reference statistics show none;
    `count_images` (`gan_jax.input_pipeline.split_size`) gives the reference bar its
    total when `num_ref` does not bound it.
    """

    def reference_total() -> int | None:
        if count_images is None:
            return num_ref
        available = count_images(config, ref)
        return available if num_ref is None else min(num_ref, available)

    phases = _Phases(progress)
    try:
        result = score_images(
            generated_images(g_state, num_samples, seed, ema=ema),
            lambda: read_images(config, split=ref, num_examples=num_ref),
            reference_meta(config, ref),
            extractor=extractor or inception.InceptionExtractor(),
            num_images=num_samples,
            num_ref=num_ref,
            kid_features=kid_features,
            stats_dir=stats_dir or weights.default_stats_dir(),
            reference_progress=phases.reporter("Reference statistics", reference_total),
            progress=phases.reporter("Generated images", lambda: num_samples),
        )
    finally:
        phases.close()
    result["ema"] = bool(ema and g_state.ema_params is not None)
    return result


class _Phases:
    """Progress bars for the phases of an evaluation, one after the other. A phase's bar
    is made by `progress` at its first update, closing the one before: a phase with
    nothing to do (cached statistics) makes none and needs no total (counting a split
    reads the dataset's metadata)."""

    def __init__(self, progress: ProgressFactory | None):
        self._progress = progress
        self._bar: Any = None

    def reporter(
        self, description: str, total: Callable[[], int | None]
    ) -> Callable[[int], None] | None:
        """The callback of one phase (None without `progress`)."""
        if self._progress is None:
            return None
        bar: Any = None

        def update(n: int) -> None:
            nonlocal bar
            if bar is None:
                self.close()
                bar = self._bar = self._progress(description, total())
            bar.update(n)

        return update

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class FidMonitor:
    """Scores the generator every `config.eval_every_steps` and keeps the best state.

    The Inception network is loaded on the first evaluation and reused, the
    reference statistics are computed once and cached. In a multi-process run
    process 0 computes the score on its own devices and shares it, so every process
    saves the same best checkpoint.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        workdir: str,
        read_images: ReadImages,
        count_images: CountImages | None = None,
    ):
        self.config = config
        self.workdir = workdir
        self.every = config.eval_every_steps
        self._read_images = read_images
        self._count_images = count_images
        self._extractor = None
        self._best = checkpoint.Checkpointer(
            rundir.checkpoint_dir(workdir, best=True), keep=1, owner=True
        )
        meta = self._best.newest_meta()
        self.best_fid = float(meta["fid"]) if meta and "fid" in meta else math.inf
        self.best_step = int(meta["step"]) if meta and "fid" in meta else None

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def _score(self, g_state: TrainState, step: int) -> dict[str, Any]:
        config = self.config
        if self._extractor is None:
            self._extractor = inception.InceptionExtractor(
                weights_path(config), resize_mode=config.eval_resize, devices=jax.local_devices()
            )
        return score_generator(
            g_state,
            config,
            self._read_images,
            num_samples=config.eval_num_samples,
            ref=config.eval_split or config.split,
            num_ref=config.eval_num_ref or None,
            seed=config.seed,
            extractor=self._extractor,
            kid_features=min(config.eval_num_ref or 10_000, 10_000),
            stats_dir=config.fid_stats_dir or weights.default_stats_dir(weights_path(config)),
            progress=lambda what, total: progress.Progress(
                f"Evaluation at step {step}: {what.lower()}", total
            ),
            count_images=self._count_images,
        )

    def evaluate(
        self, step: int, g_state: TrainState, train_seconds: float | None = None
    ) -> dict[str, Any]:
        """Scores `g_state` (host copy); returns the result, also appended to the history.

        `train_seconds`, the training wall-clock time up to `step` without evaluations,
        goes into the record (for FID against time: `python -m gan_jax.plot`).
        """
        t = time.perf_counter()
        result: dict[str, Any] = {}
        if jax.process_index() == 0:
            result = self._score(g_state, step)
        fid = result.get("fid", math.nan)
        if jax.process_count() > 1:
            fid = float(multihost_utils.broadcast_one_to_all(np.float64(fid)))
        result = {"step": step, **result, "fid": float(fid)}
        if train_seconds is not None:
            result["train_seconds"] = round(float(train_seconds), 1)
        result["eval_seconds"] = round(time.perf_counter() - t, 1)
        if jax.process_index() == 0:
            path = rundir.history_path(self.workdir)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps(result) + "\n")
        return result

    def is_best(self, fid: float) -> bool:
        return math.isfinite(fid) and fid < self.best_fid

    def save_best(
        self,
        step: int,
        g_state: TrainState,
        d_state: TrainState,
        rng: jax.Array,
        meta: dict[str, Any],
        fid: float,
    ) -> None:
        """Replaces the best checkpoint with this state (host copies)."""
        self._best.save(step, g_state, d_state, rng, {**meta, "fid": fid})
        self.best_fid, self.best_step = fid, step

    def close(self) -> None:
        self._best.close()
