"""Command-line conventions the programs share: `--help` and a console free of library noise.

absl's `--help` exits with status 1 and lists only the flags defined in `__main__`,
so a command whose flags are defined in a helper module lists none; `run` answers
`--help` itself (status 0, the command's own flags; `--helpfull` for every flag).
`quiet_library_warnings` keeps off the console what the user cannot act on:
Python deprecation warnings of the libraries and TensorFlow's C++ start-up notes.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from absl import flags

_HELP = ("help", "helpshort", "?")
_HELP_FULL = ("helpfull",)


def help_requested(argv: Sequence[str]) -> str | None:
    """ "short" for --help (-help, -?, --helpshort), "full" for --helpfull, else None.

    Example:
      >>> from gan_jax.console import help_requested
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


def run(main: Callable[[list[str]], Any], flags_parser: Callable | None = None) -> NoReturn:
    """`absl.app.run(main)` with the `--help` of `exit_on_help`; the help text is the
    docstring of `main`'s module."""
    from absl import app  # Importing it defines absl's own flags: only for programs.

    exit_on_help(sys.argv, getattr(sys.modules.get(main.__module__), "__doc__", None))
    if flags_parser is None:
        app.run(main)
    else:
        app.run(main, flags_parser=flags_parser)
    raise SystemExit(0)  # app.run exits itself; this only tells type checkers.


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
