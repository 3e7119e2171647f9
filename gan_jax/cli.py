"""What the command lines share: one-line errors, exit codes, `--help` and a quiet console.

`train.py`, `python -m gan_jax.evaluate` and `python -m gan_jax.sample` report a
problem the user can fix as one `error:` line on stderr and exit with status 2;
a training run stopped by SIGTERM/Ctrl-C after saving exits with 75.

absl's `--help` exits with status 1 and lists only the flags defined in `__main__`,
so a command whose flags are defined in a helper module lists none; `run` answers
`--help` itself (status 0, the command's own flags; `--helpfull` for every flag).
`quiet_library_logs` keeps off the console what the user cannot act on: orbax's and
tfds's log records, the libraries' deprecation warnings and TensorFlow's C++
start-up notes.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging as pylogging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
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
    name = getattr(e, "flagname", "") or ""
    if isinstance(e, flags.UnrecognizedFlagError) and name.startswith("config."):
        e = KeyError(name[len("config.") :])  # Reported as the unknown field it is.
    if isinstance(e, (AttributeError, KeyError)):
        # ml_collections raises AttributeError(KeyError("'name'\nDid you mean ...?")).
        inner = e.args[0] if e.args and isinstance(e.args[0], KeyError) else e
        lines = str(inner.args[0] if inner.args else inner).strip().splitlines() or [""]
        field = lines[0].strip("\"'")
        hint = " ".join(line.strip() for line in lines[1:])
        hint = f"; {hint[0].lower()}{hint[1:]}" if hint else ""
        given = [a for a in argv if a.startswith("--config.") and field in a.split("=")[0]]
        where = f" in {given[0]}" if given else ""
        return f"unknown config field {field!r}{where}{hint} (docs/config.md lists the fields)."
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
    quiet_library_warnings()


def quiet_library_warnings() -> None:
    """Hides library warnings the user cannot act on (for the command lines).

    Deprecation and future warnings of the libraries are ignored, and TensorFlow,
    whenever it is first imported, prints no C++ start-up notes.
    """
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, _SilentImport) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _SilentImport("tensorflow"))


class _SilentImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports one top-level package with the process's stderr (fd 2) sent to /dev/null.

    TensorFlow's C++ runtime writes notes ("oneDNN custom operations are on", absl's
    "All log messages before absl::InitializeLog()") straight to fd 2 on import, past
    TF_CPP_MIN_LOG_LEVEL. An import error still raises, with stderr restored.
    """

    def __init__(self, name: str):
        self.name = name
        self._loader: Any = None
        self._looking = False

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        # Also answers mere look-ups (`importlib.util.find_spec`, which some libraries use
        # to see whether TensorFlow is installed); only the import itself removes it.
        if fullname != self.name or self._looking:
            return None
        self._looking = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._looking = False
        if spec is None or spec.loader is None:
            return spec
        self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
            self._loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_HELP = ("help", "helpshort", "?")
_HELP_FULL = ("helpfull",)


def help_requested(argv: Sequence[str]) -> str | None:
    """ "short" for --help (-help, -?, --helpshort), "full" for --helpfull, else None.

    Example:
      >>> from gan_jax.cli import help_requested
      >>> help_requested(["train.py", "--workdir=x", "--help"]), help_requested(["x", "-?"])
      ('short', 'short')
      >>> help_requested(["x", "--helpfull"]), help_requested(["x", "--", "--help"])
      ('full', None)
    """
    for arg in argv[1:]:
        if arg == "--":
            break
        if not arg.startswith("-"):
            continue
        name = arg.lstrip("-").split("=", 1)[0]
        if name in _HELP:
            return "short"
        if name in _HELP_FULL:
            return "full"
    return None


def usage(doc: str | None, full: bool = False) -> str:
    """The help text: `doc`, then the flags of the program and of gan_jax's modules
    (`full`: every flag, absl's included)."""
    doc = (doc or "").strip() or f"USAGE: {sys.argv[0]} [flags]"
    registry = flags.FLAGS
    if full:
        listing = registry.get_help()
        tail = ""
    else:
        modules = [
            sys.argv[0],
            *sorted(m for m in registry.flags_by_module_dict() if m.startswith("gan_jax")),
        ]
        parts = [registry.module_help(m) for m in dict.fromkeys(modules)]
        listing = "\n\n".join(p.strip("\n") for p in parts if p.strip())
        tail = (
            "\n\n--helpfull lists every flag, absl's too (e.g. --verbosity=0 for all log messages)."
        )
    return f"{doc}\n\nflags:\n\n{listing.strip(chr(10))}{tail}\n"


def exit_on_help(argv: Sequence[str], doc: str | None = None) -> None:
    """Prints the usage and exits with status 0 when `argv` asks for help."""
    kind = help_requested(argv)
    if kind is None:
        return
    if doc is None:
        doc = getattr(sys.modules.get("__main__"), "__doc__", None)
    sys.stdout.write(usage(doc, full=kind == "full"))
    sys.stdout.flush()
    sys.exit(0)


def run(
    main: Callable[[list[str]], Any], flags_parser: Callable[[list[str]], list[str]] = parse_flags
) -> NoReturn:
    """`absl.app.run(main)` with the `--help` of `exit_on_help` and flag errors as one line
    (`parse_flags`); the help text is the docstring of `main`'s module."""
    from absl import app  # Importing it defines absl's own flags: only for programs.

    exit_on_help(sys.argv, getattr(sys.modules.get(main.__module__), "__doc__", None))
    app.run(main, flags_parser=flags_parser)
    raise SystemExit(0)  # app.run exits itself; this only tells type checkers.
