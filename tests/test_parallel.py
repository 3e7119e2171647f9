"""Data parallelism: 1, 2, 4 and 8 devices and two processes train exactly like one device.

The CPU device count is fixed when JAX starts, so each device count runs in a
process of its own (`parallel_worker.py`, started with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`). The reference is plain
`jax.jit(train_step)` on this process's single device, fed the same global batches:

* the parallel layer alone, with random batches: both paths on 1 device, "pmap"
  on 2 and 4, both on 8 (slow); the same metrics and states after 3 steps, one
  trace, no compilation after the first step, the caller's states intact;
* the real trainer and input pipeline ("auto", the default): 8 steps on 4
  devices; the same run resumed on 2 devices from its step-4 checkpoint (also in
  "pmap", slow); two processes with 2 devices each (`jax.distributed` over
  localhost, gloo collectives; "auto" and "pmap", both slow), each reading its own shard of
  the data, training to step 4 and resuming to 8. The reference is fed the same
  global batches (for two processes, the concatenation of both shards' batches).

Tolerance: every array of both states (parameters, BatchNorm statistics, Adam
moments) must agree with the reference to 1e-5 of its largest magnitude, the
metrics to 1e-5 relative. The measured differences are about 1e-6: XLA sums the
global batch in another order when it is split over devices.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tiny_gan

import gan_jax
from gan_jax import distributed, parallel
from gan_jax.errors import ConfigError

sys.path.insert(0, os.path.dirname(__file__))
import parallel_worker  # noqa: E402

TOL = 1e-5
STEPS = 3
WORKER = Path(__file__).with_name("parallel_worker.py")
WORKER_TIMEOUT_S = 1500  # Generous for a busy CPU; an idle 2-core machine needs about a minute.
_DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")

plain_step = jax.jit(gan_jax.train_step)


# ----------------------------------------------------------------------------- helpers


def assert_states_close(
    got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str, tol: float = TOL
):
    assert got.keys() == want.keys(), what
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape and g.dtype == w.dtype, f"{what}: {name}"
        if not np.issubdtype(w.dtype, np.floating):
            np.testing.assert_array_equal(g, w, err_msg=f"{what}: {name}")
            continue
        scale = max(float(np.max(np.abs(w))), 1e-12)
        err = float(np.max(np.abs(g.astype(np.float64) - w)))
        assert err <= tol * scale, f"{what}: {name} differs by {err:.3g} (scale {scale:.3g})"


def assert_metrics_close(got: dict, want: dict[str, np.ndarray], what: str):
    assert got.keys() == want.keys(), what
    for name, w in want.items():
        np.testing.assert_allclose(got[name], w, rtol=TOL, atol=1e-7, err_msg=f"{what}: {name}")


def assert_ran_once(info: dict, first_step: int) -> None:
    """A trainer run finished, started at `first_step`, traced its step once and compiled it
    at most once (not at all when the persistent compilation cache had it)."""
    assert info["status"] == "finished" and info["first_step"] == first_step, info
    assert info["traces"] == 1 and info["step_compiles"] <= 1, info


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_workers(specs: list[dict], directory: Path, extra_env: list[dict] | None = None) -> None:
    """Runs one worker process per spec, all at once; raises with their output if one fails."""
    procs = []
    for i, spec in enumerate(specs):
        path = directory / f"spec_{i}.json"
        path.write_text(json.dumps(spec))
        env = {k: v for k, v in os.environ.items() if k not in _DISTRIBUTED_ENV}
        env.update(
            XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={spec['devices']}",
            JAX_PLATFORMS="cpu",
            CUDA_VISIBLE_DEVICES="",
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        if jax.config.jax_compilation_cache_dir:  # Share the tests' persistent cache, if any.
            env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
            env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env.update((extra_env or [{}] * len(specs))[i])
        log = open(directory / f"worker_{i}.log", "w+")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(path)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append((proc, log))
    failures = []
    for i, (proc, log) in enumerate(procs):
        try:
            proc.wait(timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        output = log.read()
        log.close()
        if proc.returncode != 0:
            failures.append(f"worker {i} exited with {proc.returncode}:\n{output[-4000:]}")
    assert not failures, "\n\n".join(failures)


def restore_checkpoint(initial, workdir: Path, step: int) -> tuple[dict[str, np.ndarray], dict]:
    """The states of a run's checkpoint at `step`, read back here on one device."""
    from gan_jax import checkpoint

    g, d, train_key = initial
    ckpt = checkpoint.Checkpointer(str(workdir / "checkpoints"))
    try:
        g, d, key, meta = ckpt.restore(*jax.tree.map(jnp.asarray, (g, d)), train_key, step=step)
    finally:
        ckpt.close()
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(train_key))
    return parallel_worker.flat_state(g, d), meta


def train_reference(initial, batches) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Plain one-device steps from the initial states: final state, per-step metrics."""
    g, d, train_key = initial
    metrics = []
    for step, batch in enumerate(batches):
        g, d, m = plain_step(g, d, batch, jax.random.fold_in(train_key, step))
        metrics.append(m)
    stacked = {n: np.array([float(m[n]) for m in metrics]) for n in metrics[0]}
    return parallel_worker.flat_state(g, d), stacked


def load_steps(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    z = np.load(path)
    state = {k[len("state/") :]: z[k] for k in z.files if k.startswith("state/")}
    metrics = {k[len("metrics/") :]: z[k] for k in z.files if k.startswith("metrics/")}
    info = {k: z[k].item() for k in ("traces", "compiles_after_first", "inputs_intact")}
    return state, metrics, info


def steps_job(directory: Path, mode: str) -> dict:
    return {
        "kind": "steps",
        "parallel": mode,
        "steps": STEPS,
        "out": str(directory / f"{mode}.npz"),
    }


def train_job(workdir: Path, out: Path, **overrides) -> dict:
    return {"kind": "train", "workdir": str(workdir), "out": str(out), "overrides": overrides}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> ml_collections.ConfigDict:
    """The tiny 16x16 digits DCGAN, with the data prepared in a private directory."""
    from gan_jax import input_pipeline

    config = tiny_gan.config(data_dir=str(tmp_path_factory.mktemp("tfds")))
    input_pipeline.validate(config)  # Prepared once here, not raced by the workers.
    return config


@pytest.fixture(scope="module")
def initial(config):
    """The trainer's initial states and training key (`trainer.rng_streams(seed)`)."""
    from gan_jax import trainer

    init_key, train_key, _ = trainer.rng_streams(config.seed)
    return (*gan_jax.create_train_states(config, init_key), train_key)


@pytest.fixture(scope="module")
def reference(initial, config):
    """One device, `STEPS` steps on the random global batches of the "steps" jobs."""
    return train_reference(initial, parallel_worker.global_batches(config, STEPS))


@pytest.fixture(scope="module")
def pipeline_reference(initial, config):
    """One device, 8 steps on the batches of a one-process trainer run."""
    from gan_jax import input_pipeline

    batches = input_pipeline.create_input_iter(config, process_batch_size=config.batch_size)
    return train_reference(initial, (next(batches) for _ in range(config.num_train_steps)))


@pytest.fixture(scope="module")
def four_devices(config, tmp_path_factory):
    """4 devices: pmap steps, the lowered "auto" step, bad inputs, an 8-step trainer run."""
    out = tmp_path_factory.mktemp("four")
    jobs = [
        steps_job(out, "pmap"),
        {"kind": "hlo", "out": str(out / "hlo.json")},
        {"kind": "errors", "out": str(out / "errors.json")},
        train_job(out / "run", out / "train.json"),
    ]
    run_workers([{"devices": 4, "config": config.to_json(), "jobs": jobs}], out)
    return out


def resume_job(four_devices: Path, out: Path, mode: str) -> dict:
    """Resumes a copy of the 4-device run from its step-4 checkpoint, in `mode`."""
    workdir = out / f"resumed_{mode}"
    shutil.copytree(four_devices / "run", workdir)
    shutil.rmtree(workdir / "checkpoints" / "8")
    return train_job(workdir, out / f"train_{mode}.json", parallel=mode)


@pytest.fixture(scope="module")
def two_devices(config, four_devices, tmp_path_factory):
    """2 devices: pmap steps, and the 4-device run resumed from step 4 ("auto")."""
    out = tmp_path_factory.mktemp("two")
    jobs = [steps_job(out, "pmap"), resume_job(four_devices, out, "auto")]
    run_workers([{"devices": 2, "config": config.to_json(), "jobs": jobs}], out)
    return out


@pytest.fixture(scope="module")
def two_devices_pmap_resume(config, four_devices, tmp_path_factory):
    out = tmp_path_factory.mktemp("two_pmap")
    jobs = [resume_job(four_devices, out, "pmap")]
    run_workers([{"devices": 2, "config": config.to_json(), "jobs": jobs}], out)
    return out


@pytest.fixture(scope="module")
def eight_devices(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("eight")
    jobs = [steps_job(out, mode) for mode in parallel.PARALLEL_MODES]
    run_workers([{"devices": 8, "config": config.to_json(), "jobs": jobs}], out)
    return out


def run_two_processes(config, out: Path, mode: str) -> Path:
    """Two processes with 2 CPU devices each train through the trainer, 2 steps per dispatch.

    Process 0 gets the coordinator as arguments, process 1 from the environment. They
    train to step 4, then run again to step 8, resuming from the checkpoint of step 4.
    """
    address = f"localhost:{free_port()}"
    overrides = {"steps_per_dispatch": 2, "parallel": mode}
    specs = [
        {
            "devices": 2,
            "config": config.to_json(),
            "jobs": [  # To step 4, then resumed (collectively) in the same processes to 8.
                train_job(out / "run", out / f"first_{i}.json", num_train_steps=4, **overrides),
                train_job(out / "run", out / f"resumed_{i}.json", **overrides),
            ],
        }
        for i in range(2)
    ]
    specs[0]["distributed"] = {"coordinator_address": address, "num_processes": 2, "process_id": 0}
    env = [
        {},
        {"JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
    ]
    run_workers(specs, out, env)
    return out


@pytest.fixture(scope="module")
def two_processes(config, tmp_path_factory):
    return run_two_processes(config, tmp_path_factory.mktemp("two_processes"), "auto")


@pytest.fixture(scope="module")
def two_processes_pmap(config, tmp_path_factory):
    return run_two_processes(config, tmp_path_factory.mktemp("two_processes_pmap"), "pmap")


# ----------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("mode", parallel.PARALLEL_MODES)
def test_one_device_paths_match_plain_jit(initial, config, reference, mode):
    config = config.copy_and_resolve_references()
    config.parallel = mode
    par = parallel.Parallel(config)
    assert par.per_device_batch == config.batch_size == par.local_batch
    g, d, key = initial
    fn = par.compile()
    g, d = par.put_states(g, d)
    key = par.put_states(key) if mode == "auto" else key
    metrics = []
    for batch in parallel_worker.global_batches(config, STEPS):
        g, d, m = fn(g, d, par.put_batch(batch[None]), key)
        metrics.append(m)
    state = parallel_worker.flat_state(*par.get_states(g, d))
    assert_states_close(state, reference[0], mode)
    got = {n: np.concatenate([np.asarray(m[n]) for m in metrics]) for n in metrics[0]}
    assert_metrics_close(got, reference[1], mode)


@pytest.mark.parametrize(
    "devices, mode",
    [
        (2, "pmap"),
        (4, "pmap"),
        pytest.param(8, "auto", marks=pytest.mark.slow),
        pytest.param(8, "pmap", marks=pytest.mark.slow),
    ],
)
def test_n_devices_train_like_one(request, reference, devices, mode):
    """The parallel layer alone ("auto" on 2 and 4 devices runs through the trainer below)."""
    directory = request.getfixturevalue(
        {2: "two_devices", 4: "four_devices", 8: "eight_devices"}[devices]
    )
    state, metrics, info = load_steps(directory / f"{mode}.npz")
    assert_states_close(state, reference[0], f"{mode} on {devices} devices")
    assert_metrics_close(metrics, reference[1], f"{mode} on {devices} devices")
    # One trace and one compilation serve every step; the caller's states survive donation.
    assert info == {"traces": 1, "compiles_after_first": 0, "inputs_intact": True}


def test_auto_path_splits_all_work_over_devices(four_devices):
    """No image-shaped tensor of the whole global batch: the generator is split too."""
    hlo = json.loads((four_devices / "hlo.json").read_text())
    assert hlo["image_batch_sizes"], hlo  # The pattern found the images at all.
    assert max(hlo["image_batch_sizes"]) <= hlo["per_device_batch"], hlo


def test_trainer_on_4_devices_trains_like_one_device(initial, four_devices, pipeline_reference):
    """The real loop and input pipeline: 8 steps on 4 devices, one trace, one compilation."""
    info = json.loads((four_devices / "train.json").read_text())
    assert_ran_once(info, first_step=0)
    want_state, want_metrics = pipeline_reference
    assert_metrics_close(info["metrics"], want_metrics, "trainer on 4 devices")
    state, meta = restore_checkpoint(initial, four_devices / "run", 8)
    assert meta["process_count"] == 1
    assert_states_close(state, want_state, "trainer on 4 devices")


@pytest.mark.parametrize("mode", ["auto", pytest.param("pmap", marks=pytest.mark.slow)])
def test_checkpoint_of_4_devices_resumes_on_2(request, initial, pipeline_reference, mode):
    """Trained on 4 devices to step 4 ("auto"), resumed on 2: the state of the 8-step run."""
    resumed = request.getfixturevalue(
        "two_devices" if mode == "auto" else "two_devices_pmap_resume"
    )
    info = json.loads((resumed / f"train_{mode}.json").read_text())
    assert_ran_once(info, first_step=4)
    want_state, want_metrics = pipeline_reference
    steps_5_to_8 = {name: values[4:] for name, values in want_metrics.items()}
    assert_metrics_close(info["metrics"], steps_5_to_8, f"resumed on 2 devices ({mode})")
    state, _ = restore_checkpoint(initial, resumed / f"resumed_{mode}", 8)
    assert_states_close(state, want_state, f"resumed on 2 devices ({mode})")


# Two jax.distributed processes that each load TensorFlow and compile (over a minute).
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "pmap"])
def test_two_processes_train_like_one_device_on_the_same_global_batches(
    request, initial, config, mode
):
    """Each process reads its own shard; the global batch is their concatenation.

    Checkpoints are written and read back by both processes together.
    """
    from gan_jax import input_pipeline

    two_processes = request.getfixturevalue(
        "two_processes" if mode == "auto" else "two_processes_pmap"
    )
    shards = [
        input_pipeline.create_input_iter(
            config, process_batch_size=config.batch_size // 2, process_index=i, process_count=2
        )
        for i in range(2)
    ]
    global_batches = (
        np.concatenate([next(shard) for shard in shards]) for _ in range(config.num_train_steps)
    )
    want_state, want_metrics = train_reference(initial, global_batches)
    for i in range(2):
        first = json.loads((two_processes / f"first_{i}.json").read_text())
        resumed = json.loads((two_processes / f"resumed_{i}.json").read_text())
        assert_ran_once(first, first_step=0)
        assert_ran_once(resumed, first_step=4)
        metrics = {n: first["metrics"][n] + resumed["metrics"][n] for n in want_metrics}
        assert_metrics_close(metrics, want_metrics, f"process {i} ({mode})")
    run = two_processes / "run"
    for step in (4, 8):  # Both checkpoints were written collectively and read back whole.
        state, meta = restore_checkpoint(initial, run, step)
        assert meta["process_count"] == 2 and meta["step"] == step
    assert_states_close(state, want_state, f"two processes ({mode})")
    # Only process 0 writes logs (TensorBoard names its files after the writer's pid).
    pids = [json.loads((two_processes / f"first_{i}.json").read_text())["pid"] for i in range(2)]
    events = (run / "tensorboard").glob("events.*")
    writers = {int(re.search(r"\.(\d+)\.\d+\.v2$", f.name).group(1)) for f in events}
    assert writers == {pids[0]}, (writers, pids)
    assert (run / "samples" / "latest.png").exists()


# ----------------------------------------------------------------------------- errors


def test_batch_that_does_not_split_over_the_devices_is_refused(four_devices):
    messages = json.loads((four_devices / "errors.json").read_text())
    assert "batch_size=5" in messages["batch"] and "4 devices" in messages["batch"]
    assert "--config.batch_size=4" in messages["batch"]
    assert "3 devices" in messages["mesh"] and "4 devices" in messages["mesh"]


def test_check_batch_size_suggests_a_multiple():
    assert parallel.check_batch_size(32, 8) == 4
    for batch, devices, problem in [(10, 4, "divisible"), (3, 8, "divisible"), (0, 2, "positive")]:
        with pytest.raises(ConfigError, match=problem) as e:
            parallel.check_batch_size(batch, devices)
        suggested = int(str(e.value).split("--config.batch_size=")[1].rstrip("."))
        assert suggested > 0 and suggested % devices == 0


def test_bad_modes_meshes_and_batches_are_refused(config):
    bad = config.copy_and_resolve_references()
    bad.parallel = "ddp"
    with pytest.raises(ConfigError, match="unknown parallel mode 'ddp'"):
        parallel.Parallel(bad)
    wrong_axis = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
    with pytest.raises(ConfigError, match="'data'"):
        parallel.Parallel(config, mesh=wrong_axis)
    pmap_config = config.copy_and_resolve_references()
    pmap_config.parallel = "pmap"
    with pytest.raises(ConfigError, match="only used by"):
        parallel.Parallel(pmap_config, mesh=parallel.data_mesh())
    par = parallel.Parallel(config)
    with pytest.raises(ValueError, match=r"\(K, 16, \.\.\.\)"):
        par.put_batch(np.zeros((1, 8, 16, 16, 1), np.float32))


# ----------------------------------------------------------------------------- start-up


@pytest.fixture
def init_calls(monkeypatch):
    """Records calls of jax.distributed.initialize (nothing is started); clears the env."""
    for name in (
        *_DISTRIBUTED_ENV,
        "SLURM_JOB_ID",
        "SLURM_STEP_ID",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "OMPI_MCA_orte_hnp_uri",
        "OMPI_COMM_WORLD_SIZE",
        "TPU_WORKER_HOSTNAMES",
    ):
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    return calls


def test_single_process_is_left_alone(init_calls, monkeypatch):
    assert distributed.initialize() is False
    monkeypatch.setenv("SLURM_JOB_ID", "7")  # An sbatch script running one python.
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")  # A single-host TPU VM.
    assert distributed.detected_cluster() is None
    assert distributed.initialize() is False
    assert init_calls == []


def test_explicit_arguments_and_environment(init_calls, monkeypatch):
    assert distributed.initialize("10.0.0.1:1234", num_processes=4, process_id=3)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.2:99")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "1")
    assert distributed.initialize()
    assert distributed.initialize(process_id=0)  # Arguments win over the environment.
    assert init_calls == [
        {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3},
        {"coordinator_address": "10.0.0.2:99", "num_processes": 2, "process_id": 1},
        {"coordinator_address": "10.0.0.2:99", "num_processes": 2, "process_id": 0},
    ]


@pytest.mark.parametrize(
    "env, cluster",
    [
        (
            {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_PROCID": "2", "SLURM_NTASKS": "4"},
            "SLURM (srun)",
        ),
        (
            {"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "2"},
            "Open MPI (mpirun)",
        ),
        ({"TPU_WORKER_HOSTNAMES": "t1k-w-0,t1k-w-1"}, "TPU pod"),
    ],
)
def test_cluster_launchers_leave_the_details_to_jax(init_calls, monkeypatch, env, cluster):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed.detected_cluster() == cluster
    assert distributed.initialize()
    assert init_calls == [{"coordinator_address": None, "num_processes": None, "process_id": None}]


def test_forced_and_disabled_start_up(init_calls, monkeypatch):
    assert distributed.initialize(cluster=True)  # E.g. a TPU pod found via its metadata server.
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.2:99")
    assert distributed.initialize(cluster=False) is False
    assert init_calls == [{"coordinator_address": None, "num_processes": None, "process_id": None}]


def test_incomplete_start_up_arguments_are_refused(init_calls):
    with pytest.raises(
        ConfigError, match=r"--num_processes and --process_id \(or set JAX_NUM_PROCESSES and"
    ):
        distributed.initialize("10.0.0.1:1234")
    with pytest.raises(ConfigError, match="--coordinator_address"):
        distributed.initialize(num_processes=2, process_id=0)
    with pytest.raises(ConfigError, match=r"process_id=2 must be in \[0, 2\)"):
        distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=2)
    assert init_calls == []
