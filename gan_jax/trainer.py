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
import logging as pylogging
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
from absl import flags, logging

from gan_jax import checkpoint, console, fid_monitor, images, models, preflight, progress
from gan_jax.errors import ConfigError, NonFiniteError
from gan_jax.parallel import Parallel, stack_batches
from gan_jax.state import (
    DTYPES,
    TrainState,
    create_train_states,
    make_models,
    make_spec,
    num_classes,
)
from gan_jax.step import class_grid_latents, generate_from_latent, sample_latent

# Exit code of a run stopped by SIGTERM/SIGINT after its final checkpoint
# (sysexits' EX_TEMPFAIL: "try again later"); rerunning the command resumes it.
EXIT_PREEMPTED = 75
# What to do when a loss or parameter becomes NaN/inf (`config.on_nonfinite`).
NONFINITE_POLICIES = ("halt", "rollback")
# Rollbacks to the same checkpoint before the run halts after all.
MAX_ROLLBACKS = 3


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
        make_models(config)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if config.channels not in (1, 3):
        raise ConfigError(f"channels={config.channels} is not supported; use 1 or 3.")
    if config.dtype not in DTYPES:
        raise ConfigError(
            f"dtype={config.dtype!r} is not supported; use one of {sorted(DTYPES)}, e.g. "
            "--config.dtype=float32."
        )
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
    policy = nonfinite_policy(config)
    if policy not in NONFINITE_POLICIES:
        raise ConfigError(
            f"on_nonfinite={policy!r} is not one of {NONFINITE_POLICIES}; e.g. "
            "--config.on_nonfinite=halt."
        )


def nonfinite_policy(config: ml_collections.ConfigDict) -> str:
    """`config.on_nonfinite`: "halt" (the default) or "rollback"."""
    return config.get("on_nonfinite", "halt")


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
        logging.warning(
            "Received %s: saving a checkpoint and stopping.", signal.Signals(signum).name
        )

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


def run_outputs(workdir: str) -> str:
    """Where a run's results are, for its last console line."""
    where = [f"checkpoints in {os.path.join(workdir, 'checkpoints')}"]
    samples = os.path.join(workdir, "samples")
    if os.path.isdir(samples):
        where.append(f"samples in {samples}")
    return ", ".join(where)


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
    # Before anything is built or compiled: a different architecture is refused, and a
    # finished run whose newest checkpoint is intact answers at once.
    ckpt_dir = os.path.join(workdir, "checkpoints")
    newest = checkpoint.newest_meta_in(ckpt_dir)
    if newest is not None:
        checkpoint.check_compatible(newest, config, workdir)
        done = int(newest.get("step", 0))
        if done >= config.num_train_steps and checkpoint.is_intact(ckpt_dir, done):
            say(
                "Nothing to do: the run in %s already reached step %d; %s.",
                workdir,
                done,
                run_outputs(workdir),
            )
            return {"status": "already_finished", "step": done, "metrics": {}}
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
    workdir = prepare_workdir(workdir)

    ckpt = checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints, owner=True
    )
    try:
        step, examples = 0, 0

        def compatible(meta: dict[str, Any]) -> None:
            checkpoint.check_compatible(meta, config, workdir)

        init_key, train_key, sample_key = rng_streams(config.seed)
        g_state, d_state = create_train_states(config, init_key)
        if ckpt.all_steps():
            g_state, d_state, train_key, meta = ckpt.restore(
                g_state, d_state, train_key, check=compatible
            )
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
        if step >= config.num_train_steps:
            say("Nothing to do: the run in %s already reached step %d.", workdir, step)
            ckpt.close()
            return {"status": "already_finished", "step": step, "metrics": {}}

        if jax.process_index() == 0:
            with open(os.path.join(workdir, "config.json"), "w") as f:
                f.write(config.to_json_best_effort(indent=2))
        batches = input_pipeline.create_input_iter(
            config, process_batch_size=parallel.local_batch, start_example=examples
        )
        samples = sample_inputs(config, sample_key)
        logger = _Logger(workdir, config)
        monitor = fid_monitor.FidMonitor(config, workdir) if config.eval_every_steps else None
        try:
            loop = _Loop(config, workdir, parallel, ckpt, logger, batches, samples, monitor)
            summary = loop.run(g_state, d_state, train_key, step, examples)
        finally:
            logger.close()
            if monitor is not None:
                monitor.close()
    except BaseException:
        # Finish or abandon a pending save without hiding the error being raised.
        try:
            ckpt.close()
        except checkpoint.CheckpointError as e:
            logging.error("%s", e)
        raise
    ckpt.close()
    return summary


class _NonFinite(Exception):
    """Raised inside the loop when a loss or parameter is NaN/inf."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class _Loop:
    """The training loop and what it does between steps: logs, samples, saves."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        workdir: str,
        parallel: Parallel,
        ckpt: checkpoint.Checkpointer,
        logger: _Logger,
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

    def _kept(self) -> str:
        if self.last_saved is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (step {self.last_saved}) is kept in {self.ckpt.directory}"

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

    def save(self, step: int, g_state, d_state, train_key, examples: int) -> None:
        """Checks the metrics and parameters, then saves; never saves NaN/inf."""
        self.flush(keep_newest=False)
        g, d = self.parallel.get_states(g_state, d_state)
        if not bool(_all_finite((g, d))):
            raise _NonFinite(f"the parameters became NaN/inf by step {step}", step)
        self.ckpt.save(step, g, d, train_key, _meta(self.config, examples))
        self.last_saved = step

    def evaluate(self, step: int, g_state, d_state, train_key, examples: int) -> None:
        """Scores the generator, logs fid/kid, and saves the state if its FID is the best."""
        self.flush(keep_newest=False)
        g, d = self.parallel.get_states(g_state, d_state)
        result = self.monitor.evaluate(step, g)
        fid = result["fid"]
        if not math.isfinite(fid):
            logging.warning("FID %s at step %d; the best checkpoint is unchanged.", fid, step)
        best = self.monitor.is_best(fid)
        if best:
            self.monitor.save_best(step, g, d, train_key, _meta(self.config, examples), fid)
        scalars = {"fid": fid}
        if "kid_mean" in result:
            scalars["kid"] = result["kid_mean"]
        self.logger.eval_scalars(step, scalars)
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
        self.logger.start(step)  # The evaluation's time is not training speed.

    def rollback(self, bad: _NonFinite, g_state, d_state, train_key, examples: int):
        """Restores the last checkpoint; the batches read since are skipped."""
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
        g, d = self.parallel.get_states(g_state, d_state)
        g, d, train_key, _ = self.ckpt.restore(g, d, train_key, step=to)
        logging.warning(
            "%s; rolled back to the checkpoint of step %d (rollback %d of at most %d to it), "
            "skipping the batches read since (example %d of this process onwards).",
            bad,
            to,
            self.rollbacks[to],
            MAX_ROLLBACKS,
            examples,
        )
        say("Rolled back to step %d after %s.", to, bad)
        g_state, d_state = self.parallel.put_states(g, d)
        return g_state, d_state, train_key, to

    def run(self, g_state, d_state, train_key, step: int, examples: int) -> dict[str, Any]:
        config, parallel = self.config, self.parallel
        k = config.steps_per_dispatch
        per_dispatch = k * parallel.local_batch
        train_fn = parallel.compile()
        g_state, d_state = parallel.put_states(g_state, d_state)
        key = parallel.put_states(train_key) if parallel.mode == "auto" else train_key
        if self.ckpt.latest_step() == step:
            self.last_saved = step
        policy = nonfinite_policy(config)
        say(
            "Training from step %d to %d (the first step compiles; a line every %d steps).",
            step,
            config.num_train_steps,
            config.log_every_steps,
        )
        with _StopRequest() as stop:
            while True:
                log_due = False
                self.logger.start(step)
                try:
                    while step < config.num_train_steps:
                        local = stack_batches([next(self.batches) for _ in range(k)])
                        g_state, d_state, metrics = train_fn(
                            g_state, d_state, parallel.put_batch(local), key
                        )
                        self.pending.append((step, metrics))
                        if len(self.pending) > 1:
                            # At most two dispatches in flight: the device stays busy with
                            # this one while the host waits for the previous, so a stop
                            # request is acted on within a step or two, not a log interval.
                            jax.block_until_ready(self.pending[-2][1])
                        step += k
                        examples += per_dispatch
                        if log_due:  # The previous interval's metrics, read after this dispatch.
                            self.flush(keep_newest=True)
                            log_due = False
                        if step % config.log_every_steps == 0:
                            log_due = True
                        if config.sample_every_steps and step % config.sample_every_steps == 0:
                            self._samples(step, g_state)
                        if step % config.checkpoint_every_steps == 0 or (
                            step == config.num_train_steps
                        ):
                            self.save(step, g_state, d_state, train_key, examples)
                        if self.monitor is not None and self.monitor.due(step):
                            self.evaluate(step, g_state, d_state, train_key, examples)
                        if stop.signal is not None:
                            self.save(step, g_state, d_state, train_key, examples)
                            self.ckpt.wait()
                            say(
                                "Stopped at step %d after saving; rerun the same command to "
                                "resume.",
                                step,
                            )
                            return {
                                "status": "preempted",
                                "step": step,
                                "metrics": self.last_metrics,
                            }
                    self.flush(keep_newest=False)
                    break
                except _NonFinite as bad:
                    if policy == "halt":
                        raise NonFiniteError(
                            f"{bad}; {self._kept()}. Lower the learning rates or change the "
                            "loss (or set --config.on_nonfinite=rollback), then rerun to resume."
                        ) from None
                    g_state, d_state, train_key, step = self.rollback(
                        bad, g_state, d_state, train_key, examples
                    )
            self.ckpt.wait()
        say("Finished at step %d; %s.", step, run_outputs(self.workdir))
        return {"status": "finished", "step": step, "metrics": self.last_metrics}

    def _samples(self, step: int, g_state: TrainState) -> None:
        grid = _sample_grid(self.parallel.get_states(g_state), self.samples)
        if jax.process_index() == 0:
            images.save_png(os.path.join(self.workdir, "samples", f"step_{step:08d}.png"), grid)
            images.save_png(os.path.join(self.workdir, "samples", "latest.png"), grid)
            self.logger.image(step, grid)


def main_exit_code(summary: dict[str, Any]) -> int:
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


class _LibraryNoise(pylogging.Filter):
    """Drops orbax's records (the trainer reports checkpoint problems itself) and tfds's
    warnings (notes on dataset preparation), keeping tfds's errors."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        if f"{os.sep}orbax{os.sep}" in record.pathname:
            return record.levelno >= pylogging.CRITICAL
        if f"{os.sep}tensorflow_datasets{os.sep}" in record.pathname:
            return record.levelno >= pylogging.ERROR
        return True


def quiet_library_logs() -> None:
    """Keeps the console to the trainer's own messages (for the command line)."""
    pylogging.getLogger("absl").addFilter(_LibraryNoise())
    console.quiet_library_warnings()


def fail(message: str) -> None:
    """Prints a one-line error for the user and exits with status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
