"""Stopping a training run cleanly: SIGTERM (a preemption, `kill`) or Ctrl-C sets a flag
that the loop reads between steps, so that it saves a checkpoint before it exits.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any

from absl import logging

__all__ = ["StopRequest"]


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (a context manager
    that restores the previous handlers); a second signal stops at once."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second signal: stop now
            self.__exit__()
            raise KeyboardInterrupt
        self.signal = signum
        logging.warning(
            "Received %s: saving a checkpoint and stopping.", signal.Signals(signum).name
        )

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
