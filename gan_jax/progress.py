"""Progress of the long jobs (feature extraction, training) on the console, through tqdm.

On a terminal a bar redraws in place. When the stream is not a terminal (a log file,
a pipe, a notebook), each redraw would be one more carriage-return line in the log;
there the bar is written as a plain line instead, at most one every
`LOG_EVERY_SECONDS` besides the first and the last. A leaf module: it imports nothing
from gan_jax, and gan_jax.metrics never imports it (callers pass its bars in).
"""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm

# Seconds between two lines when the stream is not a terminal.
LOG_EVERY_SECONDS = 30.0
# Seconds between two redraws on a terminal.
TERMINAL_REFRESH_SECONDS = 0.5

_PLAIN = (
    "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {elapsed} elapsed, "
    "ETA {remaining}, {rate_fmt}"
)
_PLAIN_NO_TOTAL = "{desc}: {n_fmt} {unit}, {elapsed} elapsed, {rate_fmt}"
_TRAINING = "step {n_fmt}/{total_fmt} [{bar:20}] {percentage:3.0f}% {elapsed}<{remaining}"


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is an interactive terminal (False for files, pipes, closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _Lines:
    """Turns tqdm's carriage-return redraws into whole lines (for logs); drops blank writes."""

    def __init__(self, stream: IO[str]):
        self._stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self._stream.write(line + "\n")
            self._stream.flush()

    def flush(self) -> None:
        self._stream.flush()


class Progress:
    """A tqdm progress bar for `total` items that appears at its first `update`.

    `update(n)` (or calling the object) adds `n` finished items; `update(0)` shows the
    bar at the start of a phase, so that its set-up (a compilation) is counted. A phase
    that turns out to have nothing to do (cached statistics) never shows one.
    `total` may be set until then. Close it, or use it as a context manager.

    Example:
      >>> import io
      >>> from gan_jax.progress import Progress
      >>> log = io.StringIO()  # not a terminal: plain lines, no carriage returns
      >>> with Progress("Features", total=8, stream=log) as bar:
      ...     for _ in range(4):
      ...         bar.update(2)
      >>> print(log.getvalue().splitlines()[-1])
      Features: 8/8 img (100%), 00:00 elapsed, ETA 00:00, ...img/s
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        unit: str = "img",
        stream: IO[str] | None = None,
        log_every: float = LOG_EVERY_SECONDS,
    ):
        self.description = description
        self.total = total
        self.unit = unit
        self.log_every = log_every
        self._stream = stream
        self._bar: tqdm | None = None
        self._plain = False  # Lines for a log rather than redraws on a terminal.

    @property
    def started(self) -> bool:
        """Whether the bar has been shown (an `update` came)."""
        return self._bar is not None

    @property
    def n(self) -> int:
        """Items finished so far."""
        return 0 if self._bar is None else int(self._bar.n)

    def _open(self) -> tqdm:
        stream = self._stream if self._stream is not None else sys.stderr
        common = dict(desc=self.description, total=self.total, unit=self.unit, leave=True)
        if is_terminal(stream):
            return tqdm(file=stream, mininterval=TERMINAL_REFRESH_SECONDS, **common)
        self._plain = True
        return tqdm(
            file=_Lines(stream),
            mininterval=self.log_every,
            maxinterval=max(self.log_every, 10.0),
            bar_format=_PLAIN if self.total else _PLAIN_NO_TOTAL,
            **common,
        )

    def update(self, n: int = 1) -> None:
        if self._bar is None:
            self._bar = self._open()
        self._bar.update(n)

    __call__ = update

    def close(self) -> None:
        bar = self._bar
        if bar is None:
            return
        if self._plain and bar.last_print_n == bar.n:
            bar.leave = False  # The last line written already shows the final count.
        bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def training_meter(step: int, total: int, elapsed: float, steps_per_second: float | None) -> str:
    """The trainer's log-line bar: step, percentage, elapsed time and ETA.

    `steps_per_second` is the current training speed (None: not measured yet).

    Example:
      >>> from gan_jax.progress import training_meter
      >>> training_meter(200, 500, elapsed=35.2, steps_per_second=3.0)
      'step 200/500 [########............]  40% 00:35<01:40'
    """
    return tqdm.format_meter(
        step,
        max(total, 1),
        elapsed,
        ascii=".#",
        rate=steps_per_second or None,
        bar_format=_TRAINING,
    )
