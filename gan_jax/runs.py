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


def checkpoint_folder(workdir: str) -> str:
    """The checkpoints of `workdir`: its `checkpoints/`, or `workdir` itself when it has no
    such folder (a directory given to `save_checkpoint`, holding the step folders)."""
    inner = os.path.join(workdir, "checkpoints")
    if os.path.isdir(inner) or os.path.exists(os.path.join(workdir, "config.json")):
        return inner
    return workdir if os.path.isdir(workdir) else inner


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was trained with (its `config.json`).

    Without a `config.json`, the config stored in the newest checkpoint is used:
    `workdir` may also be a directory given to `save_checkpoint(..., config=config)`
    or its parent.

    Example:
      >>> import contextlib, io, gan_jax
      >>> config = gan_jax.default_config()
      >>> config.update(dict(dataset="digits", data_dir="data", image_size=16, channels=1,
      ...                    g_width=8, d_width=8, latent_dim=16, batch_size=8, num_train_steps=2))
      >>> with contextlib.redirect_stdout(io.StringIO()):  # quiet progress messages
      ...     _ = gan_jax.train_and_evaluate(config, "run")
      >>> config = gan_jax.load_config("run")
      >>> config.dataset, config.image_size, config.num_train_steps
      ('digits', 16, 2)
    """
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    meta = checkpoint.newest_meta_in(checkpoint_folder(workdir))
    if meta is not None and meta.get("config"):
        return ml_collections.ConfigDict(meta["config"])
    found = "its checkpoints hold no config" if meta is not None else "nor checkpoints"
    raise CheckpointError(
        f"{path} not found ({found}): {workdir} is not a training workdir; pass the "
        "--workdir given to train.py, or a directory written by "
        "gan_jax.save_checkpoint(..., config=config)."
    )


def load_run(workdir: str, step: int | None = None, best: bool = False) -> Run:
    """Restores the newest (or the given) checkpoint of the run in `workdir`.

    With `best=True`, restores the best-FID checkpoint the trainer keeps when
    `config.eval_every_steps` is set. `workdir` may also be a directory given to
    `save_checkpoint(..., config=config)`, or its parent (see `load_config`).

    Example:
      >>> import contextlib, io, jax, gan_jax
      >>> config = gan_jax.default_config()
      >>> config.update(dict(dataset="digits", data_dir="data", image_size=16, channels=1,
      ...                    g_width=8, d_width=8, latent_dim=16, batch_size=8, num_train_steps=2))
      >>> with contextlib.redirect_stdout(io.StringIO()):  # quiet progress messages
      ...     _ = gan_jax.train_and_evaluate(config, "run")
      >>> run = gan_jax.load_run("run")
      >>> run.step, int(run.g_state.step), run.config.latent_dim
      (2, 2, 16)
      >>> gan_jax.generate(run.g_state, jax.random.key(0), 4).shape
      (4, 16, 16, 1)
    """
    config = load_config(workdir)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    g_state, d_state = create_train_states(config, init_key)
    folder = os.path.join(workdir, BEST_DIR) if best else checkpoint_folder(workdir)
    ckpt = checkpoint.Checkpointer(folder, keep=None)
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
