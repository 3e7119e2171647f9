"""Trains a DCGAN: `python train.py --config configs/default.py --workdir DIR`.

Any config field can be overridden on the command line, e.g.
`--config.batch_size=256`. Rerunning the same command resumes the run.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", "Path to a config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Library progress goes to the console; absl INFO (orbax's chatter) only with --verbosity=0.
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from gan_jax import distributed, trainer
    from gan_jax.errors import GanJaxError

    try:
        distributed.initialize()
        summary = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except GanJaxError as e:
        trainer.fail(str(e))
    sys.exit(trainer.main_exit_code(summary))


if __name__ == "__main__":
    app.run(main)
