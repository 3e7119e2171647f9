"""Checkpoints of a run: both train states, the RNG key and run metadata, through orbax.

A checkpoint is a directory `<workdir>/checkpoints/<step>/` with two items:
`state` (the pytree leaves of both states and the RNG key) and `meta` (JSON: the
step, the examples each process has consumed, the architecture, the config and a
SHA-256 checksum of the state's leaves).

Orbax writes each checkpoint into `<step>.orbax-checkpoint-tmp*` and renames it to
`<step>` when it is complete, so a crash mid-write never leaves a checkpoint that
looks complete; the owner of a directory removes such leftovers when it opens it.
A save only counts once it is on disk: errors of an asynchronous save (a full
disk, say) are raised as `CheckpointError` by the next `save`, `wait` or `close`,
and older checkpoints are pruned only after a newer one is known to be complete.

`restore` verifies the checksum, so a checkpoint corrupted on disk is detected
even when orbax reads it without complaint. It falls back to the newest
checkpoint that is whole (the owner moves the unusable newer ones aside, never
deleting them), and raises `CheckpointError` when none is whole.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import serialization
from jax.experimental import multihost_utils

from gan_jax.errors import CheckpointError
from gan_jax.state import TrainState, has_lr_schedule

# Config fields that change the shape or meaning of the saved parameters.
ARCHITECTURE_FIELDS = (
    "image_size",
    "channels",
    "latent_dim",
    "g_width",
    "d_width",
)

_TMP_MARK = ".orbax-checkpoint-tmp"


def architecture(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a checkpoint must agree with to be resumed: the fields that shape the state."""
    arch = {k: config[k] for k in ARCHITECTURE_FIELDS}
    # The fields below came later: the config.json of an older run may lack them.
    if "arch" in config:
        arch["arch"] = config.arch
    if "conditional" in config:
        arch["num_classes"] = int(config.num_classes) if config.conditional else 0
    if "spectral_norm" in config:
        arch["spectral_norm"] = bool(config.spectral_norm)
    if "ema_decay" in config:
        arch["ema"] = bool(config.ema_decay)  # The generator's EMA parameters exist or not.
    if "lr_schedule" in config:
        arch["lr_schedule"] = has_lr_schedule(config)  # A schedule counter in Adam's state.
    return arch


def state_tree(g_state: TrainState, d_state: TrainState, rng: jax.Array) -> dict[str, Any]:
    """The pytree that is saved: both states' leaves and the raw RNG key.

    The key is a host (numpy) array: every process holds the same one, and orbax
    cannot save a process-local `jax.Array` in a multi-process run.
    """
    return {
        "g": serialization.to_state_dict(g_state),
        "d": serialization.to_state_dict(d_state),
        "rng": np.asarray(jax.random.key_data(rng)),
    }


def checksum(tree: Any) -> str:
    """SHA-256 of a pytree's leaves: their paths, dtypes, shapes and bytes.

    Integers count as int64, so a step counter that comes back from disk as
    another integer type (a fresh state holds a Python int) hashes the same.
    """
    with_paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    values = jax.device_get([leaf for _, leaf in with_paths])
    digest = hashlib.sha256()
    for (path, _), value in zip(with_paths, values, strict=True):
        value = np.asarray(value)
        if value.dtype.kind in "biu":
            value = value.astype(np.int64)
        header = f"{jax.tree_util.keystr(path)}|{value.dtype.str}|{value.shape};"
        digest.update(header.encode())
        digest.update(np.ascontiguousarray(value).reshape(-1).view(np.uint8).data)
    return "sha256:" + digest.hexdigest()


def _errno(e: BaseException) -> int | None:
    """The OS error number behind a write failure (tensorstore reports it in its text)."""
    if isinstance(e, OSError) and e.errno:
        return e.errno
    match = re.search(r"os_error_code='(\d+)'", str(e))
    return int(match.group(1)) if match else None


def _reason(e: BaseException) -> str:
    """One line about an exception: the OS error if there is one, else its first line."""
    code = _errno(e)
    if code is not None:
        return f"{os.strerror(code)} [errno {code}]"
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


_SAVE_HINTS = {
    errno.ENOSPC: "free some disk space",
    errno.EDQUOT: "free some space within your disk quota",
    errno.EFBIG: "raise the file size limit (ulimit -f)",
    errno.EACCES: "make the directory writable",
    errno.EROFS: "use a writable --workdir",
}


class Checkpointer:
    """Saves and restores runs in `directory`, keeping the newest `keep` checkpoints.

    `keep=None` keeps all. Pass `owner=True` from the one process tree that trains
    in `directory` (the trainer does): leftovers of interrupted saves are then
    removed on opening, and unusable checkpoints are moved aside on `restore`.
    Readers (e.g. a notebook watching a run) leave both alone. As a context manager
    it is closed on leaving the block.
    """

    def __init__(
        self,
        directory: str,
        keep: int | None = 3,
        async_save: bool = True,
        owner: bool = False,
    ):
        if keep is not None and keep < 1:
            raise CheckpointError(f"keep={keep} must be at least 1 (or None to keep all).")
        self.directory = os.path.abspath(directory)
        self.keep = keep
        self.owner = owner
        self._async = async_save
        self._pending: int | None = None  # Step of a save that may still be in flight.
        if owner and jax.process_index() == 0:
            self._remove_leftovers()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=None,  # Pruned here, once a newer checkpoint is known to be whole.
                create=True,
                enable_async_checkpointing=async_save,
            ),
            item_names=("state", "meta"),
        )

    def _remove_leftovers(self) -> None:
        """Deletes the temporary directories of saves that were interrupted (never complete)."""
        leftovers = glob.glob(os.path.join(self.directory, f"*{_TMP_MARK}*"))
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)
        if leftovers:
            logging.info(
                "Removed %d incomplete checkpoint(s) of interrupted saves in %s.",
                len(leftovers),
                self.directory,
            )

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(
        self,
        step: int,
        g_state: TrainState,
        d_state: TrainState,
        rng: jax.Array,
        meta: dict[str, Any],
    ) -> None:
        """Saves a checkpoint (asynchronously unless `async_save` was False).

        Raises CheckpointError if this save, or the previous asynchronous one,
        failed; the checkpoints that were complete before are left as they were.
        """
        self.wait()
        if step in self._manager.all_steps():
            return
        tree = state_tree(g_state, d_state, rng)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(tree),
            meta=ocp.args.JsonSave({**meta, "step": step, "checksum": checksum(tree)}),
        )
        self._pending = step
        try:
            self._manager.save(step, args=args, force=True)
        except Exception as e:  # noqa: BLE001 - any write failure: report it as one line
            self._failed(step, e)
        if not self._async:
            self.wait()

    def wait(self) -> None:
        """Blocks until a pending save is complete; raises CheckpointError if it failed."""
        if self._pending is None:
            return
        step = self._pending
        try:
            self._manager.wait_until_finished()
            self._manager.check_for_errors()
        except Exception as e:  # noqa: BLE001
            self._failed(step, e)
        self._manager.reload()
        if step not in self._manager.all_steps():
            self._failed(step, RuntimeError("the checkpoint directory was not completed"))
        self._pending = None
        self._prune()

    def _failed(self, step: int, e: BaseException) -> None:
        """Cleans up after a failed save of `step` and raises CheckpointError."""
        self._pending = None
        reason = _reason(e)
        hint = _SAVE_HINTS.get(_errno(e), "fix the cause")
        if jax.process_index() == 0:
            for tmp in glob.glob(os.path.join(self.directory, f"{step}{_TMP_MARK}*")):
                shutil.rmtree(tmp, ignore_errors=True)
        self._manager.reload()
        steps = self.all_steps()
        kept = (
            f"the checkpoint of step {steps[-1]} is intact"
            if steps
            else "no earlier checkpoint exists"
        )
        raise CheckpointError(
            f"could not save the checkpoint of step {step} in {self.directory} ({reason}); "
            f"{kept}. To go on, {hint} and rerun the same command."
        ) from e

    def _prune(self) -> None:
        if self.keep is None:
            return
        steps = self.all_steps()
        for old in steps[: max(0, len(steps) - self.keep)]:
            self._manager.delete(old)

    def newest_meta(self) -> dict[str, Any] | None:
        """The metadata of the newest checkpoint whose metadata reads back, if any."""
        for step in self.all_steps()[::-1]:
            try:
                return self.read_meta(step)
            except Exception:  # noqa: BLE001 - restore() reports unreadable ones
                continue
        return None

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON metadata of the checkpoint at `step`."""
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def restore(
        self,
        g_state: TrainState,
        d_state: TrainState,
        rng: jax.Array,
        step: int | None = None,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> tuple[TrainState, TrainState, jax.Array, dict[str, Any]]:
        """Restores into the structure (and shardings) of the given states.

        Without `step`, restores the newest checkpoint that reads back whole and
        matches its checksum, with one warning naming the unusable newer ones;
        an owner moves those to `<directory>_unusable/`, so that the run can
        write their steps again. `check(meta)` runs on each candidate's metadata
        before its state is read; what it raises propagates (use it to refuse
        a different architecture). Raises CheckpointError, deleting and moving
        nothing, when no checkpoint is usable.
        """
        self.wait()
        steps = [step] if step is not None else self.all_steps()[::-1]
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}.")
        target = state_tree(g_state, d_state, rng)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        failures: list[tuple[int, str]] = []
        for s in steps:
            try:
                meta = self.read_meta(s)
            except Exception as e:  # noqa: BLE001 - any read failure means "unusable"
                failures.append((s, f"its metadata is unreadable: {_reason(e)}"))
                continue
            if check is not None:
                check(meta)
            try:
                restored = self._manager.restore(
                    s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
                )
                tree = restored["state"]
            except Exception as e:  # noqa: BLE001
                failures.append((s, f"its state is unreadable: {_reason(e)}"))
                continue
            expected = meta.get("checksum")
            if expected is not None and checksum(tree) != expected:
                failures.append((s, "its state does not match the checksum saved with it"))
                continue
            if failures:
                self._set_aside(failures, s)
            g_state = serialization.from_state_dict(g_state, tree["g"])
            d_state = serialization.from_state_dict(d_state, tree["d"])
            rng = jax.random.wrap_key_data(tree["rng"])
            return g_state, d_state, rng, meta
        listing = "; ".join(f"step {s}: {why}" for s, why in failures)
        raise CheckpointError(
            f"no usable checkpoint in {self.directory} ({listing}). Nothing was deleted; "
            "move the directory aside to start afresh, or restore a backup."
        )

    def _set_aside(self, failures: list[tuple[int, str]], resumed: int) -> None:
        """Warns once about unusable checkpoints; an owner moves them out of the way."""
        listing = "; ".join(f"step {s}: {why}" for s, why in failures)
        if not self.owner:
            logging.warning(
                "Using the checkpoint of step %d: the newer one(s) are unusable (%s).",
                resumed,
                listing,
            )
            return
        aside = self.directory.rstrip(os.sep) + "_unusable"
        if jax.process_index() == 0:
            os.makedirs(aside, exist_ok=True)
            for s, _ in failures:
                dest = os.path.join(aside, str(s))
                n = 1
                while os.path.exists(dest):
                    dest, n = os.path.join(aside, f"{s}.{n}"), n + 1
                os.replace(os.path.join(self.directory, str(s)), dest)
        if jax.process_count() > 1:  # Everyone sees the same steps before saving again.
            multihost_utils.sync_global_devices("gan_jax_checkpoints_set_aside")
        self._manager.reload()
        logging.warning(
            "Resuming from the checkpoint of step %d: the newer one(s) are unusable (%s) "
            "and were moved to %s.",
            resumed,
            listing,
            aside,
        )

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb):
        """Closes; while another error is being raised, a failed save is logged, not raised."""
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except CheckpointError as e:
            logging.error("%s", e)

    def close(self) -> None:
        """Waits for a pending save (raising CheckpointError if it failed) and closes."""
        try:
            self.wait()
        finally:
            try:
                self._manager.close()
            except Exception as e:  # noqa: BLE001 - a failed save was reported already
                logging.warning("Closing the checkpoint manager: %s", _reason(e))


def newest_meta_in(directory: str) -> dict[str, Any] | None:
    """The metadata (with `step`) of the newest checkpoint in `directory` whose metadata
    reads back; None when there is none. Creates, moves and deletes nothing."""
    if not os.path.isdir(directory):
        return None
    ckpt = Checkpointer(directory, keep=None)
    try:
        return ckpt.newest_meta()
    finally:
        ckpt.close()


def is_intact(directory: str, step: int) -> bool:
    """Whether the checkpoint of `step` in `directory` reads back whole and matches its
    checksum. The state is read as saved (nested dicts of arrays), so no model or train
    state has to be built: a finished run's rerun answers from this in a moment."""
    ckpt = Checkpointer(directory, keep=None)
    try:
        meta = ckpt.read_meta(step)
        with warnings.catch_warnings():  # Orbax notes that no target sharding was given.
            warnings.simplefilter("ignore", UserWarning)
            restored = ckpt._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
            )
        expected = meta.get("checksum")
        return expected is None or checksum(restored["state"]) == expected
    except Exception:  # noqa: BLE001 - unusable: `restore` reports it, with the fallback
        return False
    finally:
        ckpt.close()


def check_compatible(saved: dict[str, Any], config: ml_collections.ConfigDict, where: str) -> None:
    """Raises CheckpointError when a checkpoint's architecture differs from `config`'s."""
    saved_arch = saved.get("architecture", {})
    current = architecture(config)
    diffs = [
        f"{k}: checkpoint {saved_arch[k]!r} vs config {current[k]!r}"
        for k in current
        if k in saved_arch and saved_arch[k] != current[k]
    ]
    if diffs:
        raise CheckpointError(
            f"the checkpoint in {where} is of a different architecture ({'; '.join(diffs)}); "
            "use another --workdir, or set these fields to the checkpoint's values."
        )


def finished_step(directory: str, config: ml_collections.ConfigDict, where: str) -> int | None:
    """The step of the newest checkpoint in `directory` when it reached
    `config.num_train_steps` and is intact, else None; reads no more than that checkpoint,
    so that a finished run's rerun needs no model, data or compilation. Raises
    CheckpointError (see `check_compatible`) when the newest is of another architecture."""
    newest = newest_meta_in(directory)
    if newest is None:
        return None
    check_compatible(newest, config, where)
    done = int(newest.get("step", 0))
    return done if done >= config.num_train_steps and is_intact(directory, done) else None
