"""FID during training: periodic evaluation and the best-FID checkpoint.

GAN quality often peaks before the end of training, so besides the newest
checkpoints the trainer keeps the state with the lowest FID so far in
`<workdir>/checkpoints_best/` (one checkpoint; its metadata holds the score).
Every evaluation is appended to `<workdir>/eval/history.jsonl`. The generated
images come from the same noise at every evaluation (the run's seed), so the
scores of one run are comparable with each other.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from gan_jax import checkpoint, progress
from gan_jax.errors import ConfigError
from gan_jax.state import TrainState

BEST_DIR = "checkpoints_best"
HISTORY = os.path.join("eval", "history.jsonl")


def weights_path(config: ml_collections.ConfigDict) -> str:
    """The Inception weights file evaluations read (`config.inception_weights` or the default)."""
    from gan_jax.metrics import weights

    return config.get("inception_weights") or weights.default_weights_path()


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError when periodic evaluation is on but cannot run (cheap checks only)."""
    every = config.get("eval_every_steps", 0)
    if not every:
        return
    from gan_jax.metrics import preprocess, weights

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


def read_best(workdir: str) -> dict[str, Any] | None:
    """The metadata of the best-FID checkpoint in `workdir` (with `step` and `fid`), if any."""
    directory = os.path.join(workdir, BEST_DIR)
    if not os.path.isdir(directory):
        return None
    ckpt = checkpoint.Checkpointer(directory, keep=None)
    try:
        return ckpt.newest_meta()
    finally:
        ckpt.close()


class FidMonitor:
    """Scores the generator every `config.eval_every_steps` and keeps the best state.

    The Inception network and the reference statistics are loaded on the first
    evaluation and reused. In a multi-process run process 0 computes the score on
    its own devices and shares it, so every process saves the same best checkpoint.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config = config
        self.workdir = workdir
        self.every = config.eval_every_steps
        self._extractor = None
        self._best = checkpoint.Checkpointer(os.path.join(workdir, BEST_DIR), keep=1, owner=True)
        meta = self._best.newest_meta()
        self.best_fid = float(meta["fid"]) if meta and "fid" in meta else math.inf
        self.best_step = int(meta["step"]) if meta and "fid" in meta else None

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def _score(self, g_state: TrainState, step: int) -> dict[str, Any]:
        from gan_jax.metrics import evaluate
        from gan_jax.metrics.extractor import InceptionExtractor

        config = self.config
        if self._extractor is None:
            self._extractor = InceptionExtractor(
                weights_path(config), resize_mode=config.eval_resize, devices=jax.local_devices()
            )
        from gan_jax.metrics import weights

        stats_dir = config.get("fid_stats_dir") or weights.default_stats_dir(weights_path(config))
        return evaluate.evaluate_generator(
            g_state,
            config,
            num_samples=config.eval_num_samples,
            ref=config.split,
            num_ref=config.eval_num_ref or None,
            seed=config.seed,
            extractor=self._extractor,
            kid_features=min(config.eval_num_ref or 10_000, 10_000),
            stats_dir=stats_dir,
            progress=lambda what, total: progress.Progress(
                f"Evaluation at step {step}: {what.lower()}", total
            ),
        )

    def evaluate(self, step: int, g_state: TrainState) -> dict[str, Any]:
        """Scores `g_state` (host copy); returns the result, also appended to the history."""
        t = time.perf_counter()
        result: dict[str, Any] = {}
        if jax.process_index() == 0:
            result = self._score(g_state, step)
        fid = result.get("fid", math.nan)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            fid = float(multihost_utils.broadcast_one_to_all(np.float64(fid)))
        result = {"step": step, **result, "fid": float(fid)}
        result["eval_seconds"] = round(time.perf_counter() - t, 1)
        if jax.process_index() == 0:
            path = os.path.join(self.workdir, HISTORY)
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
