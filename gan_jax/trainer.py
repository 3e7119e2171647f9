"""The training loop: data, compiled steps, logging, samples and checkpoints.

`train_and_evaluate(config, workdir)` resumes from the newest checkpoint in
`workdir` by itself, trains to `config.num_train_steps`, and writes TensorBoard
logs, sample grids and checkpoints there. The host only waits for the device
when it logs, samples or saves; metrics of a log interval are read after the
next step has been dispatched, so the device is never left idle for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from gan_jax import checkpoint, fid_monitor, images, preflight, rundir
from gan_jax.errors import ConfigError, NonFiniteError
from gan_jax.parallel import Parallel, stack_batches
from gan_jax.state import (
    TrainState,
    create_train_states,
    learning_rates,
    make_models,
    make_spec,
    num_classes,
)
from gan_jax.step import class_grid_latents, generate_from_latent, sample_latent
from gan_jax.stop import StopRequest
from gan_jax.train_log import TrainLogger, say

# What to do when a loss or parameter becomes NaN/inf (`config.on_nonfinite`).
NONFINITE_POLICIES = ("halt", "rollback")
# Rollbacks to the same checkpoint before the run halts after all.
MAX_ROLLBACKS = 3


def rng_streams(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The run's three keys: parameter init, training steps, and the fixed sample noise."""
    init_key, train_key, sample_key = jax.random.split(jax.random.key(seed), 3)
    return init_key, train_key, sample_key


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for values the trainer cannot run with (before any compilation)."""
    try:
        make_spec(config)
        make_models(config)
        learning_rates(config)
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
    if config.keep_checkpoints < 1:
        raise ConfigError(
            f"keep_checkpoints={config.keep_checkpoints} must be at least 1; e.g. "
            "--config.keep_checkpoints=3."
        )
    fid_monitor.validate(config)
    preflight.check_folder_dataset(config)
    if config.on_nonfinite not in NONFINITE_POLICIES:
        raise ConfigError(
            f"on_nonfinite={config.on_nonfinite!r} is not one of {NONFINITE_POLICIES}; e.g. "
            "--config.on_nonfinite=halt."
        )


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


SampleInputs = tuple[jax.Array, jax.Array | None, int | None]  # (z, labels, grid columns)


def sample_inputs(config: ml_collections.ConfigDict, key: jax.Array) -> SampleInputs:
    """The fixed inputs of the run's sample grids: `num_sample_images` latents, or for a
    conditional model one row per class (`num_sample_images // num_classes` per row)."""
    classes = num_classes(config)
    if classes:
        return class_grid_latents(key, config.num_sample_images, classes, config.latent_dim)
    return sample_latent(key, config.num_sample_images, config.latent_dim), None, None


def _sample_grid(g_state: TrainState, inputs: SampleInputs) -> np.ndarray:
    z, labels, ncols = inputs
    pictures = jax.jit(generate_from_latent)(g_state, z, labels=labels)
    return images.make_grid(np.asarray(pictures), ncols=ncols)


def _meta(config: ml_collections.ConfigDict, at: _Position) -> dict[str, Any]:
    return {
        "examples_per_process": at.examples,
        "train_seconds": round(at.train_seconds, 3),
        "process_count": jax.process_count(),
        "batch_size": config.batch_size,
        "architecture": checkpoint.architecture(config),
        "config": json.loads(config.to_json_best_effort()),
    }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (or resumes) the run in `workdir` up to `config.num_train_steps`.

    Returns a summary: `status` ("finished", "already_finished" or "preempted"),
    `step`, and the last logged `metrics`. Problems the user can fix raise a
    `GanJaxError` (a bad config or dataset, an unusable or incompatible
    checkpoint, a failed save, NaN/inf); the cheap checks run first, before any
    data is read or step compiled.

    Example:
      >>> import contextlib, io, os, gan_jax
      >>> config = gan_jax.default_config()
      >>> config.update(dict(dataset="digits", data_dir="data", image_size=16, channels=1,
      ...                    g_width=8, d_width=8, latent_dim=16, batch_size=8, num_train_steps=2))
      >>> with contextlib.redirect_stdout(io.StringIO()) as log:  # progress messages
      ...     summary = gan_jax.train_and_evaluate(config, "run")
      >>> summary["status"], summary["step"], sorted(os.listdir("run"))
      ('finished', 2, ['checkpoints', 'config.json', 'tensorboard'])
      >>> print(log.getvalue().splitlines()[-1])
      Finished at step 2; checkpoints in ...run/checkpoints.
      >>> gan_jax.train_and_evaluate(config, "run")["status"]  # resumes: nothing left to do
      Nothing to do: the run in ...run already reached step 2; checkpoints in ...run/checkpoints.
      'already_finished'
    """
    validate_config(config)
    parallel = Parallel(config)
    workdir = preflight.check_workdir(workdir)  # Creates nothing yet.
    done = checkpoint.finished_step(rundir.checkpoint_dir(workdir), config, workdir)
    if done is not None:
        say(
            "Nothing to do: the run in %s already reached step %d; %s.",
            workdir,
            done,
            rundir.run_outputs(workdir),
        )
        return {"status": "already_finished", "step": done, "metrics": {}}
    slow = preflight.slow_bfloat16_warning(config.dtype, jax.default_backend())
    if slow:
        logging.warning("%s", slow)
    say("Preparing the data and the model, then compiling the training step (can take minutes).")
    from gan_jax import input_pipeline  # TensorFlow loads only once it is needed.

    data_info = input_pipeline.validate(config)  # Before the workdir gets anything.
    say(
        "Data: %s (%d examples); %d devices, %d processes, global batch %d.",
        data_info.name,
        data_info.num_examples,
        jax.device_count(),
        jax.process_count(),
        config.batch_size,
    )
    workdir = rundir.prepare_workdir(workdir)
    init_key, train_key, sample_key = rng_streams(config.seed)
    # Whatever happens, the checkpointer finishes (or abandons) a pending save on closing,
    # without hiding an error being raised; the logger and the monitor close first.
    with contextlib.ExitStack() as closing:
        ckpt = closing.enter_context(
            checkpoint.Checkpointer(
                rundir.checkpoint_dir(workdir), keep=config.keep_checkpoints, owner=True
            )
        )
        start = _resume(config, workdir, ckpt, parallel, init_key, train_key)
        if start.step >= config.num_train_steps:
            say(
                "Nothing to do: the run in %s already reached step %d; %s.",
                workdir,
                start.step,
                rundir.run_outputs(workdir),
            )
            return {"status": "already_finished", "step": start.step, "metrics": {}}
        if jax.process_index() == 0:
            rundir.save_config(workdir, config)
        batches = input_pipeline.create_input_iter(
            config, process_batch_size=parallel.local_batch, start_example=start.examples
        )
        samples = sample_inputs(config, sample_key)
        logger = closing.enter_context(contextlib.closing(TrainLogger(workdir, config)))
        monitor = None
        if config.eval_every_steps:
            monitor = fid_monitor.FidMonitor(
                config, workdir, input_pipeline.iterate_images, input_pipeline.split_size
            )
            closing.enter_context(contextlib.closing(monitor))
        loop = _Loop(config, workdir, parallel, ckpt, logger, batches, samples, monitor)
        return loop.run(start)


@dataclasses.dataclass
class _Position:
    """Where a run is: both states (on the devices while training), the training key,
    the step, and the examples this process has read."""

    g_state: Any
    d_state: Any
    train_key: jax.Array
    step: int = 0
    examples: int = 0
    # Training wall-clock so far, evaluations excluded (in the checkpoint's metadata, so
    # that FID-against-time curves continue across a resume).
    train_seconds: float = 0.0


def _resume(
    config: ml_collections.ConfigDict,
    workdir: str,
    ckpt: checkpoint.Checkpointer,
    parallel: Parallel,
    init_key: jax.Array,
    train_key: jax.Array,
) -> _Position:
    """The newest usable checkpoint in `ckpt`, or fresh states when there is none."""

    def compatible(meta: dict[str, Any]) -> None:
        checkpoint.check_compatible(meta, config, workdir)

    g_state, d_state = create_train_states(config, init_key)
    if not ckpt.all_steps():
        return _Position(g_state, d_state, train_key)
    g_state, d_state, train_key, meta = ckpt.restore(g_state, d_state, train_key, check=compatible)
    step = int(d_state.step)  # Training steps (G's count lags when n_dis > 1).
    examples = step * parallel.local_batch
    if meta.get("process_count", 1) != jax.process_count():
        logging.warning(
            "The checkpoint was written by %s processes, this run has %d: the data "
            "order after resuming differs from an uninterrupted run.",
            meta.get("process_count"),
            jax.process_count(),
        )
    else:
        examples = int(meta.get("examples_per_process", examples))
    say("Resumed from the checkpoint of step %d in %s.", step, ckpt.directory)
    # Checkpoints written before the training clock was recorded start it at zero.
    train_seconds = float(meta.get("train_seconds", 0.0))
    return _Position(g_state, d_state, train_key, step, examples, train_seconds)


class _NonFinite(Exception):
    """Raised inside the loop when a loss or parameter is NaN/inf."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def _every(step: int, interval: int) -> bool:
    """Whether something done every `interval` steps (0: never) is due at `step`."""
    return interval > 0 and step % interval == 0


class _Loop:
    """The training loop and what it does between steps: logs, samples, saves, evaluates.

    `run` schedules; `_dispatch` runs the steps; `flush` logs (and finds NaN/inf);
    `save`, `evaluate` and `_samples` are the periodic work; `_recover` handles NaN/inf.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        workdir: str,
        parallel: Parallel,
        ckpt: checkpoint.Checkpointer,
        logger: TrainLogger,
        batches: Iterator[Any],
        samples: SampleInputs,
        monitor: fid_monitor.FidMonitor | None = None,
    ):
        self.config = config
        self.monitor = monitor
        self.workdir = workdir
        self.parallel = parallel
        self.ckpt = ckpt
        self.logger = logger
        self.batches = batches
        self.samples = samples
        self.pending: list[tuple[int, Any]] = []  # (first step, stacked device metrics)
        self.last_metrics: dict[str, float] = {}
        self.last_saved: int | None = None
        self.rollbacks: dict[int, int] = {}  # checkpoint step -> rollbacks to it
        self.clock = time.perf_counter()  # Where the training clock last stood.

    def run(self, at: _Position) -> dict[str, Any]:
        """Trains from `at` to `config.num_train_steps`, or until SIGTERM/SIGINT."""
        train_fn = self.parallel.compile()
        at.g_state, at.d_state = self.parallel.put_states(at.g_state, at.d_state)
        auto = self.parallel.mode == "auto"
        key = self.parallel.put_states(at.train_key) if auto else at.train_key
        if self.ckpt.latest_step() == at.step:
            self.last_saved = at.step
        self.clock = time.perf_counter()
        say(
            "Training from step %d to %d (the first step compiles; a line every %d steps).",
            at.step,
            self.config.num_train_steps,
            self.config.log_every_steps,
        )
        with StopRequest() as stop:
            while True:
                try:
                    stopped = self._train(at, train_fn, key, stop)
                    break
                except _NonFinite as bad:
                    self._recover(bad, at)
            self.ckpt.wait()
        if stopped:
            say("Stopped at step %d after saving; rerun the same command to resume.", at.step)
            return {"status": "preempted", "step": at.step, "metrics": self.last_metrics}
        say("Finished at step %d; %s.", at.step, rundir.run_outputs(self.workdir))
        return {"status": "finished", "step": at.step, "metrics": self.last_metrics}

    def _train(self, at: _Position, train_fn, key: jax.Array, stop: StopRequest) -> bool:
        """Runs the steps to the end (returns False) or to a stop request (True, after saving)."""
        log_due = False
        self.logger.start(at.step)
        while at.step < self.config.num_train_steps:
            self._dispatch(at, train_fn, key)
            if log_due:  # The previous interval's metrics, read after this dispatch.
                self.flush(keep_newest=True)
            log_due = _every(at.step, self.config.log_every_steps)
            self._periodic(at)
            if stop.signal is not None:
                self.save(at)
                return True
        self.flush(keep_newest=False)
        return False

    def _dispatch(self, at: _Position, train_fn, key: jax.Array) -> None:
        """Sends the next `steps_per_dispatch` steps to the devices."""
        k = self.config.steps_per_dispatch
        local = stack_batches([next(self.batches) for _ in range(k)])
        at.g_state, at.d_state, metrics = train_fn(
            at.g_state, at.d_state, self.parallel.put_batch(local), key
        )
        self.pending.append((at.step, metrics))
        if len(self.pending) > 1:
            # At most two dispatches in flight: the device stays busy with this one while
            # the host waits for the previous, so a stop request is acted on within a step
            # or two, not a log interval.
            jax.block_until_ready(self.pending[-2][1])
        at.step += k
        at.examples += k * self.parallel.local_batch

    def _periodic(self, at: _Position) -> None:
        """The samples, checkpoint and evaluation due after the step `at.step`."""
        config = self.config
        if _every(at.step, config.sample_every_steps):
            self._samples(at.step, at.g_state)
        if _every(at.step, config.checkpoint_every_steps) or at.step == config.num_train_steps:
            self.save(at)
        if self.monitor is not None and self.monitor.due(at.step):
            self.evaluate(at)

    def flush(self, keep_newest: bool) -> None:
        """Reads pending metrics, checks that they are finite, and logs their mean."""
        k = self.config.steps_per_dispatch
        if keep_newest:
            ready, self.pending = self.pending[:-1], self.pending[-1:]
        else:
            ready, self.pending = self.pending, []
        if not ready:
            return
        host = jax.device_get([m for _, m in ready])
        rows: dict[str, list[float]] = {}
        for (first, _), stacked in zip(ready, host, strict=True):
            for name, values in stacked.items():
                values = np.asarray(values)
                bad = np.flatnonzero(~np.isfinite(values))
                if bad.size:
                    at = first + int(bad[0]) + 1
                    raise _NonFinite(f"{name} became {values[bad[0]]} at step {at}", at)
                rows.setdefault(name, []).extend(values.tolist())
        means = {n: float(np.mean(v)) for n, v in rows.items()}
        self.last_metrics = self.logger.scalars(ready[-1][0] + k, means)

    def _tick(self, at: _Position) -> None:
        """Adds the time since the last tick to the run's training clock."""
        now = time.perf_counter()
        at.train_seconds += now - self.clock
        self.clock = now

    def save(self, at: _Position) -> None:
        """Checks the metrics and parameters, then saves; never saves NaN/inf."""
        self.flush(keep_newest=False)
        self._tick(at)
        g, d = self.parallel.get_states(at.g_state, at.d_state)
        if not bool(_all_finite((g, d))):
            raise _NonFinite(f"the parameters became NaN/inf by step {at.step}", at.step)
        self.ckpt.save(at.step, g, d, at.train_key, _meta(self.config, at))
        self.last_saved = at.step

    def evaluate(self, at: _Position) -> None:
        """Scores the generator, logs fid/kid, and saves the state if its FID is the best."""
        self.flush(keep_newest=False)
        self._tick(at)
        step = at.step
        g, d = self.parallel.get_states(at.g_state, at.d_state)
        result = self.monitor.evaluate(step, g, train_seconds=at.train_seconds)
        fid = result["fid"]
        if not math.isfinite(fid):
            logging.warning("FID %s at step %d; the best checkpoint is unchanged.", fid, step)
        best = self.monitor.is_best(fid)
        if best:
            meta = _meta(self.config, at)
            self.monitor.save_best(step, g, d, at.train_key, meta, fid)
        self.logger.eval_scalars(step, fid_monitor.tensorboard_scalars(result))
        say(
            "step %d | FID %.2f%s (%d images, %.0f s)",
            step,
            fid,
            " (best so far, saved)"
            if best
            else f" (best {self.monitor.best_fid:.2f} at step {self.monitor.best_step})",
            result.get("num_images", 0),
            result["eval_seconds"],
        )
        self.logger.start(step)  # The evaluation's time is not training speed,
        self.clock = time.perf_counter()  # nor training time.

    def _samples(self, step: int, g_state: TrainState) -> None:
        grid = _sample_grid(self.parallel.get_states(g_state), self.samples)
        if jax.process_index() == 0:
            folder = os.path.join(self.workdir, rundir.SAMPLES)
            images.save_png(os.path.join(folder, f"step_{step:08d}.png"), grid)
            images.save_png(os.path.join(folder, "latest.png"), grid)
            self.logger.image(step, grid)

    def _recover(self, bad: _NonFinite, at: _Position) -> None:
        """After NaN/inf: halts with an error, or rolls back (`config.on_nonfinite`)."""
        if self.config.on_nonfinite == "halt":
            raise NonFiniteError(
                f"{bad}; {self._kept()}. Lower the learning rates or change the "
                "loss (or set --config.on_nonfinite=rollback), then rerun to resume."
            ) from None
        self.rollback(bad, at)

    def _kept(self) -> str:
        if self.last_saved is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (step {self.last_saved}) is kept in {self.ckpt.directory}"

    def rollback(self, bad: _NonFinite, at: _Position) -> None:
        """Restores the last checkpoint into `at`; the batches read since are skipped."""
        self.pending = []
        self.ckpt.wait()
        to = self.last_saved
        if to is None:
            raise NonFiniteError(f"{bad}; there is no checkpoint to roll back to yet.") from None
        self.rollbacks[to] = self.rollbacks.get(to, 0) + 1
        if self.rollbacks[to] > MAX_ROLLBACKS:
            raise NonFiniteError(
                f"{bad}, again after {MAX_ROLLBACKS} rollbacks to the checkpoint of step {to} "
                f"(kept in {self.ckpt.directory}). Lower the learning rates or change the "
                "loss, then rerun to resume."
            ) from None
        g, d = self.parallel.get_states(at.g_state, at.d_state)
        g, d, at.train_key, _ = self.ckpt.restore(g, d, at.train_key, step=to)
        logging.warning(
            "%s; rolled back to the checkpoint of step %d (rollback %d of at most %d to it), "
            "skipping the batches read since (example %d of this process onwards).",
            bad,
            to,
            self.rollbacks[to],
            MAX_ROLLBACKS,
            at.examples,
        )
        say("Rolled back to step %d after %s.", to, bad)
        at.g_state, at.d_state = self.parallel.put_states(g, d)
        at.step = to
