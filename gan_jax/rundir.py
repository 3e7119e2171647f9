"""The run directory: its layout, and reading and writing what is in it.

A trainer run (`train.py --workdir DIR`) keeps everything in one directory:

    DIR/config.json             the config it was trained with
    DIR/checkpoints/STEP/       the newest checkpoints (orbax, `gan_jax.checkpoint`)
    DIR/checkpoints_best/STEP/  the best-FID checkpoint (with `config.eval_every_steps`)
    DIR/tensorboard/            logged scalars and sample grids
    DIR/samples/                sample grids as PNG files
    DIR/eval/history.jsonl      the scores of the evaluations during training
    DIR/eval/step_STEP.json     the scores of `python -m gan_jax.evaluate`

This module is the one place that knows these names. `save_checkpoint` and
`restore_checkpoint` write and read the trainer's checkpoint format for any pair of
states, so a custom loop can resume a trainer run and the reverse.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import checkpoint
from gan_jax.errors import CheckpointError, ConfigError
from gan_jax.state import TrainState, create_train_states

__all__ = [
    "BEST_CHECKPOINTS",
    "CHECKPOINTS",
    "CONFIG",
    "EVAL",
    "HISTORY",
    "SAMPLES",
    "TENSORBOARD",
    "Run",
    "checkpoint_dir",
    "checkpoint_folder",
    "eval_path",
    "history_path",
    "load_config",
    "load_run",
    "prepare_workdir",
    "read_best",
    "read_metrics",
    "restore_checkpoint",
    "run_outputs",
    "save_checkpoint",
    "save_config",
]

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
BEST_CHECKPOINTS = "checkpoints_best"
TENSORBOARD = "tensorboard"
SAMPLES = "samples"
EVAL = "eval"
HISTORY = os.path.join(EVAL, "history.jsonl")

States = tuple[TrainState, TrainState]
Path = str | os.PathLike[str]


class Run(NamedTuple):
    """A restored run: its config, both states and the step of the checkpoint."""

    config: ml_collections.ConfigDict
    g_state: TrainState
    d_state: TrainState
    step: int


def checkpoint_dir(workdir: Path, best: bool = False) -> str:
    """`workdir/checkpoints`, or with `best` the best-FID one's `workdir/checkpoints_best`."""
    return os.path.join(workdir, BEST_CHECKPOINTS if best else CHECKPOINTS)


def checkpoint_folder(directory: Path) -> str:
    """The checkpoints of `directory`: a trainer workdir's `checkpoints/`, or `directory`
    itself when it has no such folder (one given to `save_checkpoint`, holding the step
    folders)."""
    directory = os.path.abspath(os.path.expanduser(directory))
    inner = checkpoint_dir(directory)
    if os.path.isdir(inner) or os.path.exists(os.path.join(directory, CONFIG)):
        return inner
    return directory


def run_outputs(workdir: Path) -> str:
    """Where a run's results are, for its last console line."""
    where = [f"checkpoints in {checkpoint_dir(workdir)}"]
    samples = os.path.join(workdir, SAMPLES)
    if os.path.isdir(samples):
        where.append(f"samples in {samples}")
    return ", ".join(where)


def history_path(workdir: Path) -> str:
    """The file the evaluations during training are appended to, one JSON object a line."""
    return os.path.join(workdir, HISTORY)


def eval_path(workdir: Path, step: int, best: bool = False) -> str:
    """Where `python -m gan_jax.evaluate` writes the scores of a checkpoint."""
    return os.path.join(workdir, EVAL, f"{'best_' if best else ''}step_{step}.json")


def prepare_workdir(workdir: Path) -> str:
    """Creates `workdir` if needed, checks that it is writable, and returns its absolute path."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")
    try:
        os.makedirs(workdir, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(
            f"workdir {workdir} is not writable ({e.strerror}); choose another --workdir."
        ) from None
    return workdir


def save_config(workdir: Path, config: ml_collections.ConfigDict) -> None:
    """Writes the run's `config.json` (what `load_config` reads)."""
    with open(os.path.join(workdir, CONFIG), "w") as f:
        f.write(config.to_json_best_effort(indent=2))


def load_config(workdir: Path) -> ml_collections.ConfigDict:
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
    path = os.path.join(workdir, CONFIG)
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


def load_run(workdir: Path, step: int | None = None, best: bool = False) -> Run:
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
    folder = checkpoint_dir(workdir, best=True) if best else checkpoint_folder(workdir)
    with checkpoint.Checkpointer(folder, keep=None) as ckpt:
        if ckpt.latest_step() is None:
            hint = (
                "train with --config.eval_every_steps set to keep one"
                if best
                else f"train first with `python train.py --workdir {workdir} ...`"
            )
            raise CheckpointError(f"no checkpoint in {ckpt.directory}: {hint}.")
        g_state, d_state, _, meta = ckpt.restore(g_state, d_state, train_key, step=step)
    return Run(config, g_state, d_state, int(meta["step"]))


def read_best(workdir: Path) -> dict[str, Any] | None:
    """The metadata of the best-FID checkpoint in `workdir` (with `step` and `fid`), if any."""
    directory = checkpoint_dir(workdir, best=True)
    if not os.path.isdir(directory):
        return None
    with checkpoint.Checkpointer(directory, keep=None) as ckpt:
        return ckpt.newest_meta()


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
    directory: Path,
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
    directory = os.path.abspath(directory)
    with checkpoint.Checkpointer(directory, keep=keep, async_save=False) as ckpt:
        ckpt.save(step, g_state, d_state, rng, meta)
        ckpt.wait()
    return ckpt.directory


def restore_checkpoint(
    directory: Path,
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
    path = checkpoint_folder(directory)
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
    with checkpoint.Checkpointer(path, keep=None) as ckpt:
        if not ckpt.all_steps():
            raise CheckpointError(f"no checkpoint in {path}.")
        check = None
        if config is not None:
            check = lambda meta: checkpoint.check_compatible(meta, config, path)  # noqa: E731
        g_state, d_state, _, _ = ckpt.restore(
            g_state, d_state, jax.random.key(0), step=step, check=check
        )
    return g_state, d_state


def read_metrics(workdir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The scalars a trainer run logged to TensorBoard: `{name: (steps, values)}`, by step.

    Reads every event file in `<workdir>/tensorboard`; when a resumed run logged a
    step again, the newer value wins.

    Example:
      >>> import tempfile, gan_jax
      >>> gan_jax.read_metrics(tempfile.mkdtemp())
      {}
    """
    # TensorBoard's readers load TensorFlow pieces: only for the runs that read metrics.
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.util import tensor_util

    series: dict[str, dict[int, float]] = {}
    pattern = os.path.join(workdir, TENSORBOARD, "events.out.tfevents.*")
    for path in sorted(glob.glob(pattern)):
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
