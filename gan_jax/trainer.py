"""The training loop: data, compiled steps, logging, samples and checkpoints.

`train_and_evaluate(config, workdir)` resumes from the newest checkpoint in
`workdir` by itself, trains to `config.num_train_steps`, and writes TensorBoard
logs, sample grids and checkpoints there. The host only waits for the device
when it logs, samples or saves; metrics of a log interval are read after the
next step has been dispatched, so the device is never left idle for it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from gan_jax import checkpoint, images, input_pipeline, models
from gan_jax.errors import ConfigError, NonFiniteError
from gan_jax.parallel import Parallel, stack_batches
from gan_jax.state import TrainState, create_train_states, make_spec
from gan_jax.step import generate_from_latent, sample_latent

# Exit code of a run stopped by SIGTERM/SIGINT after its final checkpoint
# (sysexits' EX_TEMPFAIL: "try again later"); rerunning the command resumes it.
EXIT_PREEMPTED = 75


def say(message: str, *args: Any) -> None:
    """Prints a progress message on process 0 and logs it everywhere."""
    text = message % args if args else message
    logging.info("%s", text)
    if jax.process_index() == 0:
        print(text, flush=True)


def rng_streams(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The run's three keys: parameter init, training steps, and the fixed sample noise."""
    init_key, train_key, sample_key = jax.random.split(jax.random.key(seed), 3)
    return init_key, train_key, sample_key


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for values the trainer cannot run with (before any compilation)."""
    try:
        models.num_stages(config.image_size)
        make_spec(config)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if config.channels not in (1, 3):
        raise ConfigError(f"channels={config.channels} is not supported; use 1 or 3.")
    k = config.steps_per_dispatch
    if k < 1:
        raise ConfigError(f"steps_per_dispatch={k} must be at least 1.")
    for name in ("log_every_steps", "checkpoint_every_steps", "sample_every_steps"):
        value = config[name]
        if value < 0 or (value and value % k):
            raise ConfigError(
                f"{name}={value} must be a positive multiple of steps_per_dispatch={k} "
                f"(or 0 to disable); e.g. --config.{name}={max(k, value // k * k)}."
            )
    if config.num_train_steps % k:
        raise ConfigError(
            f"num_train_steps={config.num_train_steps} is not a multiple of "
            f"steps_per_dispatch={k}; e.g. --config.num_train_steps="
            f"{math.ceil(config.num_train_steps / k) * k}."
        )
    if config.log_every_steps == 0:
        raise ConfigError("log_every_steps must be positive (NaN checks run at every log).")


def prepare_workdir(workdir: str) -> str:
    """Creates `workdir` if needed and checks that it is writable."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")
    try:
        os.makedirs(workdir, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(
            f"workdir {workdir} is not writable ({e.strerror}); choose another --workdir."
        ) from None
    return workdir


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps."""

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
        logging.warning("Received %s: saving a checkpoint and stopping.", signal.Signals(signum).name)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class _Logger:
    """Metrics to TensorBoard and the console (process 0 only)."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict):
        self.enabled = jax.process_index() == 0
        self.total = config.num_train_steps
        self.batch_size = config.batch_size
        self._writer = None
        self._tb_dir = os.path.join(workdir, "tensorboard")
        self._last_time = time.perf_counter()
        self._last_step: int | None = None

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
        width = 20
        done = int(width * step / max(self.total, 1))
        bar = "#" * done + "." * (width - done)
        speed = m.get("images_per_sec")
        text = (
            f"[{bar}] step {step}/{self.total} | d_loss {m['d_loss']:.4f} g_loss {m['g_loss']:.4f}"
            f" D(x) {m['d_real']:.3f} D(G(z)) {m['d_fake']:.3f}"
            + (f" | {speed:,.0f} img/s" if speed else "")
        )
        say("%s", text)

    def image(self, step: int, grid: np.ndarray) -> None:
        if self.enabled:
            self._tb().image("samples", grid, step)
            self._tb().flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _sample_grid(g_state: TrainState, z: jax.Array) -> np.ndarray:
    return images.make_grid(np.asarray(jax.jit(generate_from_latent)(g_state, z)))


def _meta(config: ml_collections.ConfigDict, examples_per_process: int) -> dict[str, Any]:
    return {
        "examples_per_process": examples_per_process,
        "process_count": jax.process_count(),
        "batch_size": config.batch_size,
        "architecture": checkpoint.architecture(config),
        "config": json.loads(config.to_json_best_effort()),
    }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (or resumes) the run in `workdir` up to `config.num_train_steps`.

    Returns a summary: `status` ("finished", "already_finished" or "preempted"),
    `step`, and the last logged `metrics`.
    """
    validate_config(config)
    workdir = prepare_workdir(workdir)
    data_info = input_pipeline.validate(config)
    parallel = Parallel(config)
    say(
        "Data: %s (%d examples); %d devices, %d processes, global batch %d.",
        data_info.name, data_info.num_examples, jax.device_count(), jax.process_count(),
        config.batch_size,
    )

    init_key, train_key, sample_key = rng_streams(config.seed)
    g_state, d_state = create_train_states(config, init_key)
    ckpt = checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints
    )
    step = 0
    latest = ckpt.latest_step()
    if latest is not None:
        checkpoint.check_compatible(ckpt.read_meta(latest), config, workdir)
        g_state, d_state, train_key, meta = ckpt.restore(g_state, d_state, train_key)
        step = int(g_state.step)
        say("Resumed from the checkpoint of step %d in %s.", step, ckpt.directory)
        if meta.get("process_count", 1) != jax.process_count():
            logging.warning(
                "The checkpoint was written by %s processes, this run has %d: the data order "
                "after resuming differs from an uninterrupted run.",
                meta.get("process_count"), jax.process_count(),
            )
    if step >= config.num_train_steps:
        say("Nothing to do: the run in %s already reached step %d.", workdir, step)
        ckpt.close()
        return {"status": "already_finished", "step": step, "metrics": {}}
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    batches = input_pipeline.create_input_iter(
        config,
        process_batch_size=parallel.local_batch,
        start_example=step * parallel.local_batch,
    )
    sample_z = sample_latent(sample_key, config.num_sample_images, config.latent_dim)
    logger = _Logger(workdir, config)
    try:
        return _loop(config, workdir, parallel, ckpt, logger, batches, g_state, d_state,
                     train_key, sample_z, step)
    finally:
        logger.close()
        ckpt.close()


def _loop(
    config: ml_collections.ConfigDict,
    workdir: str,
    parallel: Parallel,
    ckpt: checkpoint.Checkpointer,
    logger: _Logger,
    batches: Iterator[np.ndarray],
    g_state: TrainState,
    d_state: TrainState,
    train_key: jax.Array,
    sample_z: jax.Array,
    step: int,
) -> dict[str, Any]:
    k = config.steps_per_dispatch
    train_fn = parallel.compile()
    g_state, d_state = parallel.put_states(g_state, d_state)
    key = parallel.put_states(train_key) if parallel.mode == "auto" else train_key
    pending: list[tuple[int, Any]] = []  # (first step, stacked device metrics)
    last_metrics: dict[str, float] = {}
    last_saved = step if ckpt.latest_step() == step else None

    def flush(keep_newest: bool) -> None:
        """Reads pending metrics, checks them, and logs their mean."""
        nonlocal pending, last_metrics
        ready, pending = (pending[:-1], pending[-1:]) if keep_newest else (pending, [])
        if not ready:
            return
        host = jax.device_get([m for _, m in ready])
        rows: dict[str, list[float]] = {}
        for (first, _), stacked in zip(ready, host, strict=True):
            for name, values in stacked.items():
                values = np.asarray(values)
                bad = np.flatnonzero(~np.isfinite(values))
                if bad.size and config.halt_on_nonfinite:
                    raise NonFiniteError(
                        f"{name} became {values[bad[0]]} at step {first + int(bad[0]) + 1}; "
                        f"the last good checkpoint (step {last_saved}) is kept in {ckpt.directory}. "
                        "Lower the learning rates or change the loss, then rerun to resume."
                    )
                rows.setdefault(name, []).extend(values.tolist())
        last_step = ready[-1][0] + k
        last_metrics = logger.scalars(last_step, {n: float(np.mean(v)) for n, v in rows.items()})

    def save(at: int) -> None:
        nonlocal last_saved
        flush(keep_newest=False)
        g, d = parallel.get_states(g_state, d_state)
        if not bool(_all_finite((g.params, d.params, g.batch_stats, d.batch_stats))):
            raise NonFiniteError(
                f"parameters became NaN/inf by step {at}; not saving them. The last good "
                f"checkpoint (step {last_saved}) is kept in {ckpt.directory}."
            )
        ckpt.save(at, g, d, train_key, _meta(config, at * parallel.local_batch))
        last_saved = at

    log_due = False
    logger.start(step)
    with _StopRequest() as stop:
        while step < config.num_train_steps:
            local = stack_batches([next(batches) for _ in range(k)])
            g_state, d_state, metrics = train_fn(g_state, d_state, parallel.put_batch(local), key)
            pending.append((step, metrics))
            step += k
            if log_due:  # the previous interval's metrics, read after this dispatch
                flush(keep_newest=True)
                log_due = False
            if step % config.log_every_steps == 0:
                log_due = True
            if config.sample_every_steps and step % config.sample_every_steps == 0:
                grid = _sample_grid(parallel.get_states(g_state), sample_z)
                if jax.process_index() == 0:
                    images.save_png(os.path.join(workdir, "samples", f"step_{step:08d}.png"), grid)
                    images.save_png(os.path.join(workdir, "samples", "latest.png"), grid)
                    logger.image(step, grid)
            if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
                save(step)
            if stop.signal is not None:
                save(step)
                ckpt.wait()
                say("Stopped at step %d after saving; rerun the same command to resume.", step)
                return {"status": "preempted", "step": step, "metrics": last_metrics}
        flush(keep_newest=False)
        ckpt.wait()
    say("Finished at step %d; checkpoints in %s.", step, ckpt.directory)
    return {"status": "finished", "step": step, "metrics": last_metrics}


def main_exit_code(summary: dict[str, Any]) -> int:
    """The process exit code for a `train_and_evaluate` summary."""
    return EXIT_PREEMPTED if summary["status"] == "preempted" else 0


def fail(message: str) -> None:
    """Prints a one-line error for the user and exits with status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
