"""What a training run reports: progress lines on the console, scalars and sample grids
in TensorBoard (`<workdir>/tensorboard/`).

Only process 0 prints and writes; every process logs its messages with absl.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import progress, rundir


def say(message: str, *args: Any) -> None:
    """Prints a progress message on process 0 and logs it everywhere."""
    text = message % args if args else message
    logging.info("%s", text)
    if jax.process_index() == 0:
        print(text, flush=True)


class TrainLogger:
    """Metrics to TensorBoard and the console (process 0 only)."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict):
        self.enabled = jax.process_index() == 0
        self.total = config.num_train_steps
        self.batch_size = config.batch_size
        self._writer = None
        self._tb_dir = os.path.join(workdir, rundir.TENSORBOARD)
        self._last_time = time.perf_counter()
        self._last_step: int | None = None
        self._started = time.perf_counter()  # For the elapsed time in the console lines.

    def _tb(self):
        if self._writer is None:
            from flax.metrics import tensorboard

            self._writer = tensorboard.SummaryWriter(self._tb_dir)
        return self._writer

    def start(self, step: int) -> None:
        self._last_time, self._last_step = time.perf_counter(), step

    def scalars(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        now = time.perf_counter()
        steps = step - (self._last_step if self._last_step is not None else step)
        metrics = dict(metrics)
        if steps > 0:
            metrics["images_per_sec"] = steps * self.batch_size / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        if not self.enabled:
            return metrics
        writer = self._tb()
        for name, value in metrics.items():
            writer.scalar(name, value, step)
        writer.flush()
        self._console(step, metrics)
        return metrics

    def _console(self, step: int, m: dict[str, float]) -> None:
        speed = m.get("images_per_sec")
        elapsed = time.perf_counter() - self._started
        meter = progress.training_meter(
            step, self.total, elapsed, speed / self.batch_size if speed else None
        )
        text = (
            f"{meter} | d_loss {m['d_loss']:.4f} g_loss {m['g_loss']:.4f}"
            f" D(x) {m['d_real']:.3f} D(G(z)) {m['d_fake']:.3f}"
            + (f" | {speed:,.0f} img/s" if speed else "")
        )
        say("%s", text)

    def eval_scalars(self, step: int, scalars: dict[str, float]) -> None:
        if self.enabled:
            for name, value in scalars.items():
                self._tb().scalar(name, value, step)
            self._tb().flush()

    def image(self, step: int, grid: np.ndarray) -> None:
        if self.enabled:
            self._tb().image("samples", grid, step)
            self._tb().flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
