"""Data parallelism: one compiled training function for 1 device, N devices and N hosts.

The global batch (`config.batch_size`) is split evenly over all devices of all
processes; every process feeds only its own devices, with its own shard of the
data (`local_batch` examples per step). The states are replicated. Two paths run
the same `train_step`:

* "auto" (default): `jax.jit` over a 1-D `("data",)` mesh of all devices, the
  batch sharded along its batch axis, `train_step` mapped over the mesh with
  `jax.shard_map` and `axis_name="data"`. Each device runs the whole step on its
  part of the batch (the generator's work is split too) and the step averages
  gradients and BatchNorm statistics over the axis.
* "pmap": the classic `jax.pmap(..., axis_name="batch")`, the same per-device
  program; the states are kept as one copy per local device.

Either way BatchNorm statistics and gradients are those of the global batch, and
the noise of a step is the global batch's (each device keeps its slice), so the
result does not depend on the number of devices or processes, up to the order of
floating-point sums. Both paths run K training steps per call (a `lax.scan` over
K stacked batches); step t uses the key `fold_in(key, t)`, so K does not matter
either.

Example (one process; with several, each passes its own (K, local_batch, ...)):
  >>> import jax, numpy as np, gan_jax
  >>> from gan_jax.parallel import Parallel
  >>> config = gan_jax.default_config()
  >>> par = Parallel(config)
  >>> g, d, key = par.put_states(*gan_jax.create_train_states(config, jax.random.key(0)),
  ...                            jax.random.key(1))
  >>> train = par.compile()
  >>> images = np.zeros((1, par.local_batch, 32, 32, 3), np.float32)
  >>> g, d, metrics = train(g, d, par.put_batch(images), key)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gan_jax.errors import ConfigError
from gan_jax.state import TrainState
from gan_jax.step import train_step

PARALLEL_MODES = ("auto", "pmap")
MESH_AXIS = "data"
PMAP_AXIS = "batch"
StepFn = Callable[[TrainState, TrainState, Any, jax.Array], tuple[TrainState, TrainState, Any]]


def check_batch_size(batch_size: int, devices: int | None = None) -> int:
    """Returns the per-device batch size, or raises if `batch_size` does not split evenly."""
    devices = devices or jax.device_count()
    if batch_size < 1:
        example = max(devices, 128 // devices * devices)
        raise ConfigError(
            f"batch_size={batch_size} must be positive: it is the global batch, split over "
            f"all devices; e.g. --config.batch_size={example}."
        )
    if batch_size % devices:
        suggestion = max(devices, round(batch_size / devices) * devices)
        raise ConfigError(
            f"batch_size={batch_size} (the global batch) is not divisible by the {devices} "
            f"devices; use a multiple of {devices}, e.g. --config.batch_size={suggestion}."
        )
    return batch_size // devices


def data_mesh(devices: Any = None) -> Mesh:
    """The 1-D `("data",)` mesh of `devices` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (MESH_AXIS,), devices=devices)


def check_mesh(mesh: Mesh) -> None:
    """Raises ConfigError unless `mesh` is a 1-D `("data",)` mesh of every device exactly once."""
    if tuple(mesh.axis_names) != (MESH_AXIS,):
        raise ConfigError(
            f"the mesh has axes {tuple(mesh.axis_names)}, but data parallelism needs one axis "
            f"named {MESH_AXIS!r}; build it with gan_jax.parallel.data_mesh()."
        )
    ids = sorted(d.id for d in mesh.devices.flat)
    expected = sorted(d.id for d in jax.devices())
    if ids != expected:

        def show(x: list[int]) -> str:
            return f"{x[:8]}{'...' if len(x) > 8 else ''}"

        raise ConfigError(
            f"the mesh has {len(ids)} devices {show(ids)}, but JAX sees {len(expected)} devices "
            f"in {jax.process_count()} process(es) {show(expected)}; a data mesh holds every "
            "device once: build it with gan_jax.parallel.data_mesh() (after "
            "gan_jax.distributed.initialize() in a multi-process run)."
        )


def multi_step(
    g_state: TrainState,
    d_state: TrainState,
    batches_KxN: Any,
    key: jax.Array,
    axis_name: str | None = None,
) -> tuple[TrainState, TrainState, dict[str, jax.Array]]:
    """Runs `train_step` over K stacked batches; metrics come back stacked (K,).

    `batches_KxN` is an image array (K, N, H, W, C), or a dict of such stacked
    arrays (`{"image": ..., "label": (K, N)}` for a conditional model). Step t
    uses the key `fold_in(key, t)`, so K steps per call give the same result as K
    calls of one step. The step count t is the discriminator's, which counts
    training steps (the generator's lags behind it when `n_dis > 1`).
    """

    def body(carry, batch):
        g, d = carry
        g, d, metrics = train_step(g, d, batch, jax.random.fold_in(key, d.step), axis_name)
        return (g, d), metrics

    if jax.tree.leaves(batches_KxN)[0].shape[0] == 1:
        first = jax.tree.map(lambda x: x[0], batches_KxN)
        (g_state, d_state), metrics = body((g_state, d_state), first)
        return g_state, d_state, jax.tree.map(lambda m: m[None], metrics)
    (g_state, d_state), metrics = jax.lax.scan(body, (g_state, d_state), batches_KxN)
    return g_state, d_state, metrics


# The compiled functions are cached, so that every `Parallel` of a mesh (the trainer
# builds one per run) shares one trace and one compilation per input shape.


@functools.cache
def _auto_fn(mesh: Mesh) -> StepFn:
    replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P(None, MESH_AXIS))
    # check_vma=False: the pmap semantics, in which `train_step` averages gradients
    # and BatchNorm statistics itself (with checking, JAX would already sum the
    # gradients of the replicated parameters over the devices).
    per_device = jax.shard_map(
        functools.partial(multi_step, axis_name=MESH_AXIS),
        mesh=mesh,
        in_specs=(P(), P(), P(None, MESH_AXIS), P()),
        out_specs=(P(), P(), P()),
        check_vma=False,
    )
    return jax.jit(
        per_device,
        in_shardings=(replicated, replicated, batch, replicated),
        out_shardings=(replicated, replicated, replicated),
        donate_argnums=(0, 1),
    )


@functools.cache
def _pmap_fn() -> StepFn:
    pmapped = jax.pmap(
        functools.partial(multi_step, axis_name=PMAP_AXIS),
        axis_name=PMAP_AXIS,
        in_axes=(0, 0, 0, None),
        donate_argnums=(0, 1),
    )

    def step(g, d, images, key):
        g, d, metrics = pmapped(g, d, images, key)
        return g, d, jax.tree.map(lambda m: m[0], metrics)

    return step


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


class Parallel:
    """Places states and batches on the devices and compiles the training function.

    Attributes:
      mode: "auto" or "pmap".
      mesh: the `("data",)` mesh of all devices.
      per_device_batch: examples per device and step.
      local_devices: this process's devices, in mesh order.
      local_batch: examples this process feeds per step (per-device batch x its devices).
    """

    def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh | None = None):
        if config.parallel not in PARALLEL_MODES:
            raise ConfigError(
                f"unknown parallel mode {config.parallel!r}; use one of {PARALLEL_MODES} "
                "(--config.parallel=auto)."
            )
        self.mode = config.parallel
        if mesh is not None and self.mode == "pmap":
            raise ConfigError(
                "a mesh is only used by --config.parallel=auto; pmap uses all devices."
            )
        self.mesh = data_mesh() if mesh is None else mesh
        check_mesh(self.mesh)
        self.per_device_batch = check_batch_size(config.batch_size, self.mesh.size)
        me = jax.process_index()
        self.local_devices = [d for d in self.mesh.devices.flat if d.process_index == me]
        self.local_batch = self.per_device_batch * len(self.local_devices)
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P(None, MESH_AXIS))
        # Where `jax.pmap` itself puts its mapped inputs, so that it never recompiles.
        pmap_mesh = Mesh(np.array(jax.local_devices()), (PMAP_AXIS,))
        self._pmap_sharding = NamedSharding(pmap_mesh, P(PMAP_AXIS))

    def replicate(self, *trees: Any) -> Any:
        """Pytrees (PRNG keys included) as global arrays replicated over the whole mesh.

        This is the form in which states are saved and restored collectively (by
        orbax, on every process) and used outside the training function. Every
        process must pass the same values. The arrays go through the host, so the
        copies never share a buffer with the inputs.
        """
        out = tuple(jax.tree.map(functools.partial(self._put, per_device=False), t) for t in trees)
        return out if len(out) > 1 else out[0]

    def put_states(self, *states: Any) -> Any:
        """States (or keys) placed for the training function of this mode.

        "auto": as `replicate`; "pmap": one copy per local device, stacked. The
        inputs stay valid when the training function donates the result.
        """
        per_device = self.mode == "pmap"
        out = tuple(
            jax.tree.map(functools.partial(self._put, per_device=per_device), s) for s in states
        )
        return out if len(out) > 1 else out[0]

    def _put(self, x: Any, per_device: bool) -> Any:
        if _is_key(x):
            data = self._put(jax.random.key_data(x), per_device)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        if not isinstance(x, jax.Array | np.ndarray | np.generic | int | float):
            return x
        host = np.asarray(x)
        if per_device:
            copies = np.broadcast_to(host, (len(self.local_devices), *host.shape))
            return jax.device_put(copies, self._pmap_sharding)
        return jax.device_put(host, self.replicated)

    def get_states(self, *states: Any) -> Any:
        """The training function's states as global arrays replicated over the mesh.

        On "auto" they are already so; on "pmap" the first local copy is replicated.
        Use the result for sampling, checks and saving, not as training input.
        """
        if self.mode == "pmap":
            out = tuple(jax.tree.map(self._from_pmap, s) for s in states)
        else:
            out = states
        return out if len(out) > 1 else out[0]

    def _from_pmap(self, x: Any) -> Any:
        if not isinstance(x, jax.Array):
            return x
        if _is_key(x):
            data = self._from_pmap(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.device_put(np.asarray(x.addressable_shards[0].data)[0], self.replicated)

    def put_batch(self, local_KxN: Any) -> Any:
        """This process's K stacked batches (K, local_batch, ...) as the training input.

        An array, or a dict of arrays that all have those two leading axes (images
        and labels of a conditional model). Every process passes its own examples;
        the global batch of a step is the concatenation of all processes' batches
        in process order.
        """
        return jax.tree.map(self._put_batch_array, local_KxN)

    def _put_batch_array(self, local_KxNx___: np.ndarray) -> jax.Array:
        if local_KxNx___.ndim < 2 or local_KxNx___.shape[1] != self.local_batch:
            raise ValueError(
                f"expected this process's batches as (K, {self.local_batch}, ...) "
                f"(per-device batch {self.per_device_batch} x {len(self.local_devices)} local "
                f"devices), got shape {local_KxNx___.shape}."
            )
        if self.mode == "pmap":
            k, n = local_KxNx___.shape[:2]
            d = len(self.local_devices)
            x = local_KxNx___.reshape(k, d, n // d, *local_KxNx___.shape[2:]).swapaxes(0, 1)
            return jax.device_put(x, self._pmap_sharding)
        return jax.make_array_from_process_local_data(self.batch_sharding, local_KxNx___)

    def compile(self) -> StepFn:
        """The training function `(g_state, d_state, batches_KxN..., key) -> (g, d, metrics)`.

        Takes what `put_states` and `put_batch` give (and the key unplaced on
        "pmap"); metrics come back stacked (K,), the same on every device. The
        states are donated: use the returned ones.
        """
        return _pmap_fn() if self.mode == "pmap" else _auto_fn(self.mesh)


def stack_batches(batches: list[Any]) -> Any:
    """Stacks K host batches (arrays, or dicts of arrays) into one (K, N, ...) batch."""
    if len(batches) == 1:
        return jax.tree.map(lambda x: x[None], batches[0])
    return jax.tree.map(lambda *xs: np.stack(xs), *batches)
