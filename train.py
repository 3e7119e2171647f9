"""Trains a DCGAN: `python train.py --config configs/default.py --workdir DIR`.

Any config field can be overridden on the command line, e.g.
`--config.batch_size=256` (docs/config.md lists them). Rerunning the same command
resumes the run.
Exit status: 0 when done, 2 for a problem to fix (one `error:` line on stderr),
75 when stopped by SIGTERM/Ctrl-C after saving (rerun to resume).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ start-up chatter.

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", "Path to a config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.mark_flags_as_required(["workdir"])
# Multi-process runs (docs/parallel.md). SLURM (srun), Open MPI and TPU pods that list
# their workers in the environment need none of these; JAX_COORDINATOR_ADDRESS,
# JAX_NUM_PROCESSES and JAX_PROCESS_ID stand in for the first three.
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0, for a multi-process run."
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Number of processes of the run (with --coordinator_address)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index, 0 to num_processes - 1."
)
_MULTIHOST = flags.DEFINE_boolean(
    "multihost",
    None,
    "Start the multi-process runtime even when the environment does not show a cluster "
    "(e.g. a TPU pod: JAX asks its metadata server); --nomultihost never starts it. "
    "Default: start it when a coordinator or a cluster launcher is found.",
)


def main(argv: list[str]) -> None:
    from gan_jax import cli, distributed, trainer
    from gan_jax.errors import GanJaxError

    cli.check_arguments(argv)
    cli.quiet_library_logs()  # Library progress goes to the console, orbax's chatter not.
    try:
        config = _CONFIG.value
        config.get("seed")  # A config file that failed to load raises on first use.
    except Exception as e:  # noqa: BLE001
        cli.fail(cli.flag_error(e, argv))
    try:
        distributed.initialize(
            _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, cluster=_MULTIHOST.value
        )
        summary = trainer.train_and_evaluate(config, _WORKDIR.value)
    except GanJaxError as e:
        cli.fail(str(e))
    sys.exit(cli.exit_code(summary))


if __name__ == "__main__":
    from gan_jax import cli

    cli.run(main)  # Flag errors as one `error:` line, --help with status 0.
