"""Conveniences for research code: checkpoints of any two states, and a run's logged metrics.

`save_checkpoint`/`restore_checkpoint` write and read the same checkpoint format as
the trainer (orbax, `gan_jax.checkpoint`), so a custom loop can resume a trainer run
and `train.py` can resume a custom loop's checkpoints. `read_metrics` reads back the
scalars the trainer logged to TensorBoard.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import checkpoint
from gan_jax.errors import CheckpointError
from gan_jax.state import TrainState, create_train_states

__all__ = ["read_metrics", "restore_checkpoint", "save_checkpoint"]

States = tuple[TrainState, TrainState]


def _checkpoint_dir(directory: str | os.PathLike[str]) -> str:
    """`directory` itself, or its `checkpoints/` folder when it is a trainer workdir."""
    directory = os.path.abspath(os.path.expanduser(directory))
    inner = os.path.join(directory, "checkpoints")
    return inner if os.path.isdir(inner) else directory


def _architecture(g_state: TrainState, d_state: TrainState) -> dict[str, Any]:
    """The architecture fields readable from the states' modules (custom modules may lack some)."""
    found = {
        "image_size": getattr(g_state.model, "image_size", None),
        "channels": getattr(g_state.model, "channels", None),
        "latent_dim": g_state.spec.latent_dim,
        "g_width": getattr(g_state.model, "width", None),
        "d_width": getattr(d_state.model, "width", None),
    }
    return {k: v for k, v in found.items() if v is not None}


def _int32_step(state: TrainState) -> TrainState:
    """Fresh states count steps with a Python int; checkpoints hold the int32 of training."""
    if isinstance(state.step, jax.ShapeDtypeStruct):
        return state
    return state.replace(step=jnp.asarray(state.step, jnp.int32))


def save_checkpoint(
    directory: str | os.PathLike[str],
    g_state: TrainState,
    d_state: TrainState,
    step: int | None = None,
    *,
    config: ml_collections.ConfigDict | None = None,
    rng: jax.Array | None = None,
    keep: int | None = 3,
) -> str:
    """Saves both states as the checkpoint of `step` (default: the training steps, `d_state.step`).

    Blocks until the files are complete and returns the checkpoint directory. Only
    the newest `keep` checkpoints in `directory` are kept (None keeps all); an
    existing checkpoint of the same step is left as it is. `config` and `rng` are
    stored too when given, so that `train.py` can resume from the checkpoint; with
    `config`, `load_run`, `python -m gan_jax.sample` and `python -m gan_jax.evaluate`
    read `directory` (or its parent, when it is `<run>/checkpoints`) like a trainer workdir.

    Example:
      >>> import os, tempfile, jax, gan_jax
      >>> config = gan_jax.default_config()
      >>> config.update(dict(image_size=16, g_width=16, d_width=16))  # a small model
      >>> g_state, d_state = gan_jax.create_train_states(config, jax.random.key(0))
      >>> path = gan_jax.save_checkpoint(tempfile.mkdtemp(), g_state, d_state, step=5)
      >>> os.listdir(path)
      ['5']
    """
    step = int(d_state.step) if step is None else int(step)
    rng = jax.random.key(0) if rng is None else rng
    g_state, d_state = _int32_step(g_state), _int32_step(d_state)
    meta: dict[str, Any] = {"architecture": _architecture(g_state, d_state)}
    if config is not None:
        meta["architecture"] = checkpoint.architecture(config)
        meta["config"] = json.loads(config.to_json_best_effort())
    ckpt = checkpoint.Checkpointer(os.path.abspath(directory), keep=keep, async_save=False)
    try:
        ckpt.save(step, g_state, d_state, rng, meta)
        ckpt.wait()
    finally:
        ckpt.close()
    return ckpt.directory


def restore_checkpoint(
    directory: str | os.PathLike[str],
    target: ml_collections.ConfigDict | States,
    step: int | None = None,
) -> States:
    """Restores `(g_state, d_state)` from the newest (or the given) checkpoint in `directory`.

    `directory` is a checkpoint directory or a trainer workdir. `target` is the
    config the states were trained with, or a `(g_state, d_state)` pair of the right
    structure (for custom models); the restored step is `int(d_state.step)`. Raises
    `CheckpointError` when there is no checkpoint, or when its architecture differs
    from `target`'s config.

    Example:
      >>> import tempfile, jax, gan_jax
      >>> config = gan_jax.default_config()
      >>> config.update(dict(image_size=16, g_width=16, d_width=16))  # a small model
      >>> trained_g, trained_d = gan_jax.create_train_states(config, jax.random.key(42))
      >>> path = gan_jax.save_checkpoint(tempfile.mkdtemp(), trained_g, trained_d)
      >>> g_state, d_state = gan_jax.restore_checkpoint(path, config)
      >>> same = jax.tree.map(lambda a, b: (a == b).all(), g_state.params, trained_g.params)
      >>> int(g_state.step), jax.tree.all(same)
      (0, True)
    """
    path = _checkpoint_dir(directory)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path} does not exist: pass a directory given to save_checkpoint.")
    if isinstance(target, ml_collections.ConfigDict):
        config = target
        # Only the structure is needed: shapes, dtypes and the static modules.
        g_state, d_state = jax.eval_shape(
            lambda key: create_train_states(config, key), jax.random.key(0)
        )
    else:
        config = None
        g_state, d_state = (_int32_step(s) for s in target)
    ckpt = checkpoint.Checkpointer(path, keep=None)
    try:
        if not ckpt.all_steps():
            raise CheckpointError(f"no checkpoint in {path}.")
        check = None
        if config is not None:
            check = lambda meta: checkpoint.check_compatible(meta, config, path)  # noqa: E731
        g_state, d_state, _, _ = ckpt.restore(
            g_state, d_state, jax.random.key(0), step=step, check=check
        )
    finally:
        ckpt.close()
    return g_state, d_state


def read_metrics(workdir: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The scalars a trainer run logged to TensorBoard: `{name: (steps, values)}`, by step.

    Reads every event file in `<workdir>/tensorboard`; when a resumed run logged a
    step again, the newer value wins.

    Example:
      >>> import tempfile, gan_jax
      >>> gan_jax.read_metrics(tempfile.mkdtemp())
      {}
    """
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.util import tensor_util

    series: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    number = float(value.simple_value)
                elif kind == "tensor" and value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tensor_util.make_ndarray(value.tensor))
                else:
                    continue
                series.setdefault(value.tag, {})[int(event.step)] = number
    out = {}
    for name, by_step in sorted(series.items()):
        steps = np.array(sorted(by_step), np.int64)
        out[name] = (steps, np.array([by_step[s] for s in steps], np.float64))
    return out
