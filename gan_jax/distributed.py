"""Multi-process (multi-host) start-up: `jax.distributed.initialize` when, and only when, needed.

One process per host (TPU VMs, one process driving all local GPUs) or one per
GPU (SLURM/MPI launchers) all run the same command. JAX then sees every device
of every process, `gan_jax.parallel` shards each global batch over all of them,
every process reads its own part of the data, and orbax saves and restores
checkpoints collectively. Nothing else changes.
"""

from __future__ import annotations

import os

import jax
from absl import logging

from gan_jax.errors import ConfigError


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer.") from None


def detected_cluster() -> str | None:
    """The multi-process launcher found in the environment, or None for a single process.

    Recognised: `JAX_COORDINATOR_ADDRESS`, `srun` with more than one task, Open MPI's
    `mpirun` with more than one rank, and TPU pods that list more than one worker in
    `TPU_WORKER_HOSTNAMES`. (A TPU pod whose environment does not say so needs
    `initialize(cluster=True)`: JAX then asks the TPU metadata server.)
    """
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "JAX_COORDINATOR_ADDRESS"
    if "SLURM_STEP_ID" in env and "SLURM_PROCID" in env and (_int_env("SLURM_NTASKS") or 1) > 1:
        return "SLURM (srun)"
    if "OMPI_MCA_orte_hnp_uri" in env and (_int_env("OMPI_COMM_WORLD_SIZE") or 1) > 1:
        return "Open MPI (mpirun)"
    workers = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if len(workers) > 1:
        return "TPU pod"
    return None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    cluster: bool | None = None,
) -> bool:
    """Starts `jax.distributed` for a multi-process run; returns whether it did.

    Call it before anything else touches JAX devices. Explicit arguments win;
    `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` stand in
    for missing ones. Without an address, a cluster launcher found by
    `detected_cluster()` supplies everything. `cluster=True` initialises even when
    nothing is detected (JAX's own detection, e.g. a TPU pod through its metadata
    server); `cluster=False` never initialises. A single process is left alone.

    Example, two processes on one machine (run each with its own `process_id`):
      >>> initialize("localhost:12345", num_processes=2, process_id=0)  # doctest: +SKIP
      True
    """
    if cluster is False:
        return False
    if jax.distributed.is_initialized():
        return True
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None:
        num_processes = _int_env("JAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _int_env("JAX_PROCESS_ID")
    found = detected_cluster()
    if coordinator_address is None and found is None and not cluster:
        if num_processes is not None and num_processes > 1:
            raise ConfigError(
                f"num_processes={num_processes} needs a coordinator: pass "
                "--coordinator_address=HOST:PORT (process 0's host and a free port)."
            )
        return False
    if coordinator_address is not None and found in (None, "JAX_COORDINATOR_ADDRESS"):
        missing = [
            (flag, env)
            for flag, env, value in (
                ("--num_processes", "JAX_NUM_PROCESSES", num_processes),
                ("--process_id", "JAX_PROCESS_ID", process_id),
            )
            if value is None
        ]
        if missing:
            raise ConfigError(
                f"with the coordinator {coordinator_address}, also pass "
                f"{' and '.join(flag for flag, _ in missing)} (or set "
                f"{' and '.join(env for _, env in missing)})."
            )
        if not 0 <= process_id < num_processes:
            raise ConfigError(
                f"process_id={process_id} must be in [0, {num_processes}) "
                f"(num_processes={num_processes})."
            )
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    except RuntimeError as e:
        if "must be called before" in str(e):
            raise ConfigError(
                "the multi-process start-up must come before anything uses JAX devices: call "
                "gan_jax.distributed.initialize() first in the program."
            ) from e
        raise
    logging.info(
        "Process %d of %d (%s): %d local of %d devices.",
        jax.process_index(),
        jax.process_count(),
        found or "explicit coordinator",
        jax.local_device_count(),
        jax.device_count(),
    )
    return True
