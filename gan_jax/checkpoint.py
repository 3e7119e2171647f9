"""Checkpoints of a run: both train states, the RNG key and run metadata, through orbax.

A checkpoint is a directory `<workdir>/checkpoints/<step>/` with two items:
`state` (the pytree leaves of both states and the RNG key) and `meta` (JSON: the
step, the examples each process has consumed, the architecture and the config).
Orbax writes each checkpoint to a temporary directory and renames it when it is
complete, so a crash mid-write never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import serialization

from gan_jax.errors import CheckpointError
from gan_jax.state import TrainState

# Config fields that change the shape or meaning of the saved parameters.
ARCHITECTURE_FIELDS = (
    "image_size",
    "channels",
    "latent_dim",
    "g_width",
    "d_width",
)


def architecture(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config fields a checkpoint must agree with to be resumed."""
    return {k: config[k] for k in ARCHITECTURE_FIELDS}


def state_tree(g_state: TrainState, d_state: TrainState, rng: jax.Array) -> dict[str, Any]:
    """The pytree that is saved: both states' leaves and the raw RNG key."""
    return {
        "g": serialization.to_state_dict(g_state),
        "d": serialization.to_state_dict(d_state),
        "rng": jax.random.key_data(rng),
    }


class Checkpointer:
    """Saves and restores runs in `directory`, keeping the newest `keep` checkpoints."""

    def __init__(self, directory: str, keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                create=True,
                enable_async_checkpointing=async_save,
            ),
            item_names=("state", "meta"),
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
        """Saves a checkpoint (asynchronously unless `async_save` was False)."""
        if step in self._manager.all_steps():
            return
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state_tree(g_state, d_state, rng)),
            meta=ocp.args.JsonSave({**meta, "step": step}),
        )
        self._manager.save(step, args=args, force=True)

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
    ) -> tuple[TrainState, TrainState, jax.Array, dict[str, Any]]:
        """Restores into the structure (and shardings) of the given states.

        Without `step`, restores the newest checkpoint that reads back whole; a
        checkpoint that fails to read is reported and the previous one is tried.
        Nothing is deleted. Raises CheckpointError when none can be read.
        """
        steps = [step] if step is not None else self.all_steps()[::-1]
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}.")
        target = state_tree(g_state, d_state, rng)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        failures = []
        for s in steps:
            try:
                restored = self._manager.restore(
                    s,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                    ),
                )
            except Exception as e:  # noqa: BLE001 - any read failure means "unusable"
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                logging.warning(
                    "Checkpoint %s/%d is unreadable (%s); trying an older one.",
                    self.directory, s, reason[:300],
                )
                failures.append(f"step {s} ({reason[:200]})")
                continue
            if failures:
                logging.warning(
                    "Resumed from the checkpoint of step %d instead of the newer unreadable %s.",
                    s, ", ".join(failures),
                )
            tree = restored["state"]
            g_state = serialization.from_state_dict(g_state, tree["g"])
            d_state = serialization.from_state_dict(d_state, tree["d"])
            rng = jax.random.wrap_key_data(tree["rng"])
            return g_state, d_state, rng, dict(restored["meta"])
        raise CheckpointError(
            f"no readable checkpoint in {self.directory}: {'; '.join(failures)}. Nothing was "
            "deleted; move the directory aside to start afresh, or restore a backup."
        )

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are complete."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def check_compatible(saved: dict[str, Any], config: ml_collections.ConfigDict, where: str) -> None:
    """Raises CheckpointError when a checkpoint's architecture differs from `config`'s."""
    saved_arch = saved.get("architecture", {})
    diffs = [
        f"{k}: checkpoint {saved_arch[k]!r} vs config {config[k]!r}"
        for k in ARCHITECTURE_FIELDS
        if k in saved_arch and saved_arch[k] != config[k]
    ]
    if diffs:
        raise CheckpointError(
            f"the checkpoint in {where} is of a different architecture ({'; '.join(diffs)}); "
            "use another --workdir, or set these fields to the checkpoint's values."
        )
