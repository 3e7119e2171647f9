"""What the command lines share: one-line errors, exit codes and a quiet console.

`train.py`, `python -m gan_jax.evaluate` and `python -m gan_jax.sample` report a
problem the user can fix as one `error:` line on stderr and exit with status 2;
a training run stopped by SIGTERM/Ctrl-C after saving exits with 75.
"""

from __future__ import annotations

import logging as pylogging
import os
import sys
from typing import Any, NoReturn

from absl import flags, logging

# A problem to fix (a bad flag, config, dataset or checkpoint), reported in one line.
EXIT_PROBLEM = 2
# A run stopped by SIGTERM/SIGINT after its final checkpoint (sysexits' EX_TEMPFAIL:
# "try again later"); rerunning the command resumes it.
EXIT_PREEMPTED = 75


def fail(message: str) -> NoReturn:
    """Prints a one-line error for the user and exits with status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_PROBLEM)


def exit_code(summary: dict[str, Any]) -> int:
    """The process exit code for a `train_and_evaluate` summary."""
    return EXIT_PREEMPTED if summary["status"] == "preempted" else 0


def flag_error(e: BaseException, argv: list[str]) -> str:
    """One line for an error from parsing the command line (absl flags, ml_collections)."""
    text = str(e).strip()
    if isinstance(e, (AttributeError, KeyError)):
        field = text.strip("\"'")
        given = [a for a in argv if a.startswith("--config.") and field in a.split("=")[0]]
        where = f"in {given[0]} " if given else ""
        return f"unknown config field {field!r} {where}(see configs/default.py for the fields)."
    if "is not supported for overriding" in text:
        field = text.split(" of field ")[-1].split(" is not")[0]
        return (
            f"{field} cannot be set on the command line (its default is None, which has no "
            "type to parse into); set it in a config file instead."
        )
    if isinstance(e, OSError):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return f"could not load the config file: {lines[-1] if lines else e}"
    lines = text.splitlines()
    first = lines[0] if lines else type(e).__name__
    return first if isinstance(e, flags.Error) else f"{type(e).__name__}: {first}"


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (`app.run(main, flags_parser=parse_flags)`), errors as one line."""
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - flag and config-file errors come in many types
        fail(flag_error(e, argv))


def check_arguments(argv: list[str]) -> None:
    """Fails on positional arguments (absl leaves them in `argv`)."""
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --).")


def require_workdir(workdir: str | None) -> str:
    """`--workdir`, which the command cannot do without (failing when it is missing)."""
    if workdir is None:
        fail("--workdir is required (the directory given to train.py).")
    return workdir


class _LibraryNoise(pylogging.Filter):
    """Drops orbax's records (gan_jax reports checkpoint problems itself) and tfds's
    warnings (notes on dataset preparation), keeping tfds's errors."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        if f"{os.sep}orbax{os.sep}" in record.pathname:
            return record.levelno >= pylogging.CRITICAL
        if f"{os.sep}tensorflow_datasets{os.sep}" in record.pathname:
            return record.levelno >= pylogging.ERROR
        return True


def quiet_library_logs() -> None:
    """Keeps the console to gan_jax's own messages, unless `--verbosity` was given.

    absl's INFO (orbax's chatter) shows only with `--verbosity=0`.
    """
    if flags.FLAGS["verbosity"].present:
        return
    logging.set_verbosity(logging.WARNING)
    pylogging.getLogger("absl").addFilter(_LibraryNoise())
