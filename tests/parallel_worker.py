"""Data-parallel training in a fresh process with its own CPU devices (used by test_parallel.py).

    XLA_FLAGS=--xla_force_host_platform_device_count=N python tests/parallel_worker.py SPEC.json

The device count must be set before JAX is imported, hence a process per count.
SPEC holds `devices` (the local device count, checked), `config` (a ConfigDict as
JSON), optionally `distributed` (keyword arguments of
`gan_jax.distributed.initialize`) and a list of `jobs`, each writing to its `out`:

* `steps`: `steps` calls of the compiled function of `Parallel` (mode `parallel`)
  from the trainer's initial states and key (`trainer.rng_streams(seed)`), fed
  `global_batches(config, steps)` (this process's part of each), with the job's
  optional config `overrides`. Writes the final states, per-step metrics, how
  often `train_step` was traced, and how many XLA compilations happened after
  the first step (.npz).
* `hlo`: the batch sizes of the image-shaped (B, S, S, C) tensors in the lowered
  "auto" step (.json).
* `train`: `train_and_evaluate(config + overrides, workdir)`; records the step at
  which training started (after a resume, the checkpoint's), the metrics of
  every step, the process id, how often `train_step` was traced and the training function
  compiled (.json).
* `errors`: the ConfigError messages for a global batch that does not split over
  the devices and for a mesh without all devices (.json).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from typing import Any

import numpy as np

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def global_batches(config: Any, steps: int, seed: int = 1234) -> Any:
    """`steps` deterministic global batches (steps, batch_size, S, S, C) in [-1, 1].

    For a conditional config, `{"image": those, "label": (steps, batch_size) int32}`.
    """
    shape = (steps, config.batch_size, config.image_size, config.image_size, config.channels)
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, shape).astype(np.float32)
    if not config.get("conditional", False):
        return images
    labels = rng.integers(0, config.num_classes, shape[:2]).astype(np.int32)
    return {"image": images, "label": labels}


@functools.cache
def _initial_states(config_json: str) -> tuple[Any, Any]:
    """The trainer's initial states for `config`, built once per process.

    Jobs share them (the parallel layer copies what it places), which spares the
    compilation of the initialisers.
    """
    import ml_collections

    import gan_jax
    from gan_jax import trainer

    config = ml_collections.ConfigDict(json.loads(config_json))
    init_key, _, _ = trainer.rng_streams(config.seed)
    return gan_jax.create_train_states(config, init_key)


def flat_state(g_state: Any, d_state: Any) -> dict[str, np.ndarray]:
    """Every array of both states by path (params, batch_stats, optimiser state, step)."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path({"g": g_state, "d": d_state})[0]
    return {jax.tree_util.keystr(path): np.asarray(x) for path, x in leaves}


def _steps(config: Any, job: dict[str, Any]) -> None:
    import jax

    from gan_jax import parallel as parallel_lib
    from gan_jax import trainer
    from gan_jax.step import train_step

    config.parallel = job["parallel"]
    config_json = job["config"]
    if job.get("overrides"):
        config.update(job["overrides"])
        config_json = config.to_json()
    counts = {"traces": 0, "compiles": 0}

    def counted_train_step(*args, **kwargs):
        counts["traces"] += 1
        return train_step(*args, **kwargs)

    def on_event(event: str, duration: float, **kwargs: Any) -> None:
        if event == COMPILE_EVENT:
            counts["compiles"] += 1

    jax.monitoring.register_event_duration_secs_listener(on_event)
    parallel_lib.train_step = counted_train_step
    try:
        par = parallel_lib.Parallel(config)
        g_state, d_state = _initial_states(config_json)
        key = trainer.rng_streams(config.seed)[1]
        fn = par.compile()
        g, d = par.put_states(g_state, d_state)
        key = par.put_states(key) if par.mode == "auto" else key
        start = jax.process_index() * par.local_batch
        metrics = []
        batches = global_batches(config, job["steps"])
        end = start + par.local_batch
        for i in range(job["steps"]):
            local = jax.tree.map(lambda x, i=i: x[None, i, start:end], batches)
            g, d, m = fn(g, d, par.put_batch(local), key)
            metrics.append({n: float(np.asarray(v)[0]) for n, v in m.items()})
            if i == 0:
                compiles_after_first = -counts["compiles"]
        compiles_after_first += counts["compiles"]
        g, d = par.get_states(g, d)
    finally:
        parallel_lib.train_step = train_step
    out = {f"state/{k}": v for k, v in flat_state(g, d).items()}
    for name in metrics[0]:
        out[f"metrics/{name}"] = np.array([m[name] for m in metrics])
    out["traces"] = np.array(counts["traces"])
    out["compiles_after_first"] = np.array(compiles_after_first)
    inputs = jax.tree.leaves((g_state.params, d_state.params))
    out["inputs_intact"] = np.array(not any(x.is_deleted() for x in inputs))
    np.savez(job["out"], **out)


def _hlo(config: Any, job: dict[str, Any]) -> None:
    import jax

    from gan_jax.parallel import Parallel

    config.parallel = "auto"
    par = Parallel(config)
    g_state, d_state = _initial_states(job["config"])
    images = par.put_batch(global_batches(config, 1)[:, : par.local_batch])
    g, d, key = par.put_states(g_state, d_state, jax.random.key(0))
    text = par.compile().lower(g, d, images, key).as_text()
    s, c = config.image_size, config.channels
    sizes = sorted({int(n) for n in re.findall(rf"tensor<(\d+)x{s}x{s}x{c}xf32>", text)})
    with open(job["out"], "w") as f:
        json.dump({"image_batch_sizes": sizes, "per_device_batch": par.per_device_batch}, f)


def _train(config: Any, job: dict[str, Any]) -> None:
    import jax

    from gan_jax import parallel as parallel_lib
    from gan_jax import trainer
    from gan_jax.step import train_step

    config.update(job.get("overrides", {}))
    counts = {"traces": 0, "step_compiles": 0}
    first_steps = []
    compile_fn = parallel_lib.Parallel.compile

    def counted_train_step(*args, **kwargs):
        counts["traces"] += 1
        return train_step(*args, **kwargs)

    def on_event(event: str, duration: float, **kwargs: Any) -> None:
        if event == COMPILE_EVENT and "multi_step" in str(kwargs.get("fun_name", "")):
            counts["step_compiles"] += 1

    metrics = []

    def recording_compile(self):
        fn = compile_fn(self)

        def step(g_state, d_state, images, key):
            if not first_steps:
                first_steps.append(int(np.asarray(self.get_states(d_state).step)))
            g_state, d_state, stacked = fn(g_state, d_state, images, key)
            metrics.append(stacked)
            return g_state, d_state, stacked

        return step

    jax.monitoring.register_event_duration_secs_listener(on_event)
    parallel_lib.Parallel.compile = recording_compile
    parallel_lib.train_step = counted_train_step
    try:
        summary = trainer.train_and_evaluate(config, job["workdir"])
    finally:
        parallel_lib.Parallel.compile = compile_fn
        parallel_lib.train_step = train_step
    per_step = {
        name: np.concatenate([np.asarray(m[name]) for m in metrics]).tolist() for name in metrics[0]
    }
    info = {"status": summary["status"], "first_step": first_steps[0], "pid": os.getpid(), **counts}
    with open(job["out"], "w") as f:
        json.dump({**info, "metrics": per_step}, f)


def _errors(config: Any, job: dict[str, Any]) -> None:
    import jax

    from gan_jax.errors import ConfigError
    from gan_jax.parallel import Parallel, data_mesh

    bad_batch = config.copy_and_resolve_references()
    bad_batch.batch_size = jax.device_count() + 1
    attempts = {
        "batch": lambda: Parallel(bad_batch),
        "mesh": lambda: Parallel(config, mesh=data_mesh(jax.devices()[:-1])),
    }
    messages = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            messages[name] = None
        except ConfigError as e:
            messages[name] = str(e)
    with open(job["out"], "w") as f:
        json.dump(messages, f)


JOBS = {"steps": _steps, "hlo": _hlo, "train": _train, "errors": _errors}


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        raise SystemExit("set XLA_FLAGS=--xla_force_host_platform_device_count=N first")
    import jax
    import ml_collections

    from gan_jax import distributed

    distributed.initialize(**spec.get("distributed", {}))
    if jax.local_device_count() != spec["devices"]:
        raise SystemExit(f"expected {spec['devices']} local devices, got {jax.local_devices()}")
    for job in spec["jobs"]:
        config = ml_collections.ConfigDict(json.loads(spec["config"]))
        job = {**job, "config": spec["config"]}
        start = time.process_time()
        JOBS[job["kind"]](config, job)
        print(f"{job['kind']} job: {time.process_time() - start:.1f} s of CPU", flush=True)
    print(f"process {jax.process_index()} of {jax.process_count()}: done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
