"""Loading a trained run (its config and newest checkpoint) from a workdir."""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import ml_collections

from gan_jax import checkpoint
from gan_jax.errors import CheckpointError
from gan_jax.fid_monitor import BEST_DIR
from gan_jax.state import TrainState, create_train_states


class Run(NamedTuple):
    config: ml_collections.ConfigDict
    g_state: TrainState
    d_state: TrainState
    step: int


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was trained with (its `config.json`)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise CheckpointError(
            f"{path} not found: {workdir} is not a training workdir; pass the --workdir "
            "given to train.py."
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def load_run(workdir: str, step: int | None = None, best: bool = False) -> Run:
    """Restores the newest (or the given) checkpoint of the run in `workdir`.

    With `best=True`, restores the best-FID checkpoint the trainer keeps when
    `config.eval_every_steps` is set.

    Example:
      >>> run = load_run("/path/to/workdir")  # doctest: +SKIP
      >>> images = gan_jax.generate(run.g_state, jax.random.key(0), 16)  # doctest: +SKIP
    """
    config = load_config(workdir)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    g_state, d_state = create_train_states(config, init_key)
    folder = BEST_DIR if best else "checkpoints"
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, folder), keep=None)
    try:
        if ckpt.latest_step() is None:
            hint = (
                "train with --config.eval_every_steps set to keep one"
                if best
                else f"train first with `python train.py --workdir {workdir} ...`"
            )
            raise CheckpointError(f"no checkpoint in {ckpt.directory}: {hint}.")
        g_state, d_state, _, meta = ckpt.restore(g_state, d_state, train_key, step=step)
    finally:
        ckpt.close()
    return Run(config, g_state, d_state, int(meta["step"]))
