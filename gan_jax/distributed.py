"""Multi-process (multi-host) start-up."""

from __future__ import annotations

import os

import jax
from absl import logging

# Environments in which `jax.distributed.initialize()` finds the cluster by itself.
_CLUSTER_ENV = ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "OMPI_COMM_WORLD_SIZE", "JAX_COORDINATOR_ADDRESS")


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Starts `jax.distributed` when running as one of several processes.

    Explicit arguments win; otherwise a SLURM job, a TPU pod or `JAX_COORDINATOR_ADDRESS`
    (with `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`) is detected from the environment.
    A single process on one machine needs none of this and is left alone.
    """
    if coordinator_address is None:
        coordinator_address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and "JAX_PROCESS_ID" in os.environ:
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if coordinator_address is None and not any(v in os.environ for v in _CLUSTER_ENV):
        return
    if os.environ.get("SLURM_NTASKS") == "1" and coordinator_address is None:
        return
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
    logging.info(
        "Process %d of %d; %d local of %d devices.",
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
    )
