"""Data parallelism: one compiled training function for 1 device, N devices and N hosts.

Two paths call the same `train_step`:

* "auto": `jax.jit` over a 1-D `("data",)` mesh of all devices. The batch is
  sharded along its first axis, the states are replicated, and XLA inserts the
  collectives, so BatchNorm statistics and gradients are those of the global
  batch by construction.
* "pmap": the classic `jax.pmap(..., axis_name="batch")`, with replicated states
  and `axis_name` passed to `train_step` (cross-replica BatchNorm and gradient
  averaging).

Both run `steps_per_dispatch` training steps per call (a `lax.scan` over stacked
batches) and derive each step's key as `fold_in(key, step)` on the device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import jax_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from gan_jax.errors import ConfigError
from gan_jax.state import TrainState
from gan_jax.step import train_step

PARALLEL_MODES = ("auto", "pmap")
StepFn = Callable[[TrainState, TrainState, Any, jax.Array], tuple[TrainState, TrainState, Any]]


def check_batch_size(batch_size: int, devices: int | None = None) -> int:
    """Returns the per-device batch size, or raises if `batch_size` does not split evenly."""
    devices = devices or jax.device_count()
    if batch_size <= 0 or batch_size % devices:
        raise ConfigError(
            f"batch_size={batch_size} is not divisible by the {devices} devices; use a multiple "
            f"of {devices} (e.g. --config.batch_size={max(devices, batch_size // devices * devices)})."
        )
    return batch_size // devices


def multi_step(
    g_state: TrainState,
    d_state: TrainState,
    images_KxNxHxWxC: jax.Array,
    key: jax.Array,
    axis_name: str | None = None,
) -> tuple[TrainState, TrainState, dict[str, jax.Array]]:
    """Runs `train_step` over K stacked batches; metrics come back stacked (K,).

    Step t uses the key `fold_in(key, t)`, so K steps per call give the same
    result as K calls of one step.
    """

    def body(carry, images):
        g, d = carry
        g, d, metrics = train_step(g, d, images, jax.random.fold_in(key, g.step), axis_name)
        return (g, d), metrics

    if images_KxNxHxWxC.shape[0] == 1:
        (g_state, d_state), metrics = body((g_state, d_state), images_KxNxHxWxC[0])
        return g_state, d_state, jax.tree.map(lambda m: m[None], metrics)
    (g_state, d_state), metrics = jax.lax.scan(body, (g_state, d_state), images_KxNxHxWxC)
    return g_state, d_state, metrics


class Parallel:
    """Places states and batches on the devices and compiles the training function."""

    def __init__(self, config: ml_collections.ConfigDict):
        if config.parallel not in PARALLEL_MODES:
            raise ConfigError(
                f"unknown parallel mode {config.parallel!r}; use one of {PARALLEL_MODES} "
                "(--config.parallel=auto)."
            )
        self.mode = config.parallel
        self.per_device_batch = check_batch_size(config.batch_size)
        self.local_batch = self.per_device_batch * jax.local_device_count()
        self.mesh = jax.make_mesh((jax.device_count(),), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P(None, "data"))
        local_mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("local",))
        self._pmap_sharding = NamedSharding(local_mesh, P("local"))

    def put_states(self, *states: Any) -> Any:
        """Replicates states (or any pytrees) over all devices for this mode."""
        if self.mode == "pmap":
            out = tuple(jax_utils.replicate(s) for s in states)
        else:
            out = tuple(jax.device_put(s, self.replicated) for s in states)
        return out if len(out) > 1 else out[0]

    def get_states(self, *states: Any) -> Any:
        """The first replica of each state as ordinary (unreplicated) arrays."""
        if self.mode == "pmap":
            out = tuple(jax.tree.map(lambda x: x[0], s) for s in states)
        else:
            out = states
        return out if len(out) > 1 else out[0]

    def put_batch(self, local_KxNxHxWxC: np.ndarray) -> jax.Array:
        """Turns this process's K stacked batches into the global device array."""
        if self.mode == "pmap":
            k, n = local_KxNxHxWxC.shape[:2]
            d = jax.local_device_count()
            x = local_KxNxHxWxC.reshape(k, d, n // d, *local_KxNxHxWxC.shape[2:]).swapaxes(0, 1)
            return jax.device_put(x, self._pmap_sharding)
        return jax.make_array_from_process_local_data(self.batch_sharding, local_KxNxHxWxC)

    def compile(self) -> StepFn:
        """The training function `(g_state, d_state, images_KxN..., key) -> (g, d, metrics)`.

        The states are donated: the caller must use the returned ones.
        """
        if self.mode == "pmap":
            fn = functools.partial(multi_step, axis_name="batch")
            pmapped = jax.pmap(
                fn, axis_name="batch", in_axes=(0, 0, 0, None), donate_argnums=(0, 1)
            )

            def step(g, d, images, key):
                g, d, metrics = pmapped(g, d, images, key)
                return g, d, jax.tree.map(lambda m: m[0], metrics)

            return step
        return jax.jit(
            multi_step,
            in_shardings=(self.replicated, self.replicated, self.batch_sharding, self.replicated),
            out_shardings=(self.replicated, self.replicated, self.replicated),
            donate_argnums=(0, 1),
        )


def stack_batches(batches: list[np.ndarray]) -> np.ndarray:
    """Stacks K host batches into one (K, N, ...) array."""
    return np.stack(batches) if len(batches) > 1 else batches[0][None]

