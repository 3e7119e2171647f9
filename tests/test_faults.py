"""`python train.py` under real faults: SIGKILL, SIGTERM, kills during checkpoint writes, bad input.

The subprocesses share the persistent compilation cache of the in-process runs,
so each pays for start-up (imports, data) but not for compiling.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tiny_gan
from PIL import Image

from gan_jax import default_config
from gan_jax.cli import EXIT_PREEMPTED
from gan_jax.trainer import train_and_evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "train.py")
STEPS = 40
# Everything but the step count; the config file and the in-process runs use the same.
FIELDS = dict(
    tiny_gan.MODEL,
    log_every_steps=4,
    sample_every_steps=0,
    checkpoint_every_steps=4,
    keep_checkpoints=3,
    num_sample_images=4,
)
# Not messages: what TensorFlow's C++ runtime prints at start-up whatever the outcome, and
# the progress bars of tfds preparing a dataset.
NOT_MESSAGES = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog|I0000 )|(it|examples|splits)/s\]"
)
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def messages(stderr: str) -> list[str]:
    """The lines of stderr that are messages (see NOT_MESSAGES)."""
    lines = (ANSI_CODES.sub("", line).strip() for line in stderr.splitlines())
    return [line for line in lines if line and not NOT_MESSAGES.search(line)]


def tiny(num_train_steps: int, **overrides):
    config = default_config()
    for name, value in {**FIELDS, "num_train_steps": num_train_steps, **overrides}.items():
        config[name] = value
    return config


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """The subprocesses use this process's persistent compilation cache (see conftest)."""
    cache = {"PYTHONUNBUFFERED": "1"}
    if jax.config.jax_compilation_cache_dir:
        cache["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
        cache["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return {**os.environ, **cache}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "tiny.py"
    lines = [f"    config.{k} = {v!r}" for k, v in {**FIELDS, "num_train_steps": STEPS}.items()]
    path.write_text(
        "from gan_jax import default_config\n\n\ndef get_config():\n"
        "    config = default_config()\n" + "\n".join(lines) + "\n    return config\n"
    )
    return str(path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    """A workdir trained straight to STEPS in this process."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    assert train_and_evaluate(tiny(STEPS), workdir)["status"] == "finished"
    return workdir


def saved_state(workdir, step: int) -> dict[str, np.ndarray]:
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    leaves = jax.tree_util.tree_flatten_with_path(ocp.PyTreeCheckpointer().restore(path))[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


def assert_bitwise_equal(a, b) -> None:
    assert sorted(a) == sorted(b)
    differ = [k for k in a if a[k].tobytes() != b[k].tobytes()]
    assert not differ, f"leaves differ: {differ[:5]}"


def steps_on_disk(workdir) -> list[int]:
    path = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(path) if n.isdigit()) if os.path.isdir(path) else []


def train_cmd(config_file: str, workdir: str, *overrides: str) -> list[str]:
    return [sys.executable, TRAIN_PY, f"--config={config_file}", f"--workdir={workdir}", *overrides]


# --- SIGTERM and SIGKILL mid-run ----------------------------------------------------------


def _run_until_checkpoint(cmd, env, workdir, step: int, sig: int, log) -> tuple[int, float]:
    """Starts `cmd`, sends `sig` once the checkpoint of `step` is complete on disk.

    Returns the exit status and the seconds from the signal to the exit.
    """
    child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 300
        while step not in steps_on_disk(workdir):  # Complete ones only: tmp dirs differ.
            assert child.poll() is None, f"exited with {child.returncode} before step {step}"
            assert time.monotonic() < deadline, f"no checkpoint of step {step} in 300 s"
            time.sleep(0.01)
        sent = time.monotonic()
        child.send_signal(sig)
        child.wait(timeout=120)
        return child.returncode, time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_preempted_then_killed_run_resumes_to_the_same_parameters(
    reference, config_file, env, tmp_path
):
    workdir = str(tmp_path / "run")
    cmd = train_cmd(config_file, workdir)
    log_path = tmp_path / "log.txt"
    with log_path.open("w") as log:
        status, took = _run_until_checkpoint(cmd, env, workdir, 8, signal.SIGTERM, log)
    output = log_path.read_text()
    assert status == EXIT_PREEMPTED, output[-3000:]
    assert took < 30, f"took {took:.1f} s to save and exit after SIGTERM"
    stopped = re.search(r"Stopped at step (\d+) after saving", output)
    assert stopped and steps_on_disk(workdir)[-1] == int(stopped.group(1)), output[-3000:]

    # Restarted, then SIGKILLed once it has saved again: no chance to clean up.
    again = int(stopped.group(1)) + 8
    with log_path.open("w") as log:
        status, _ = _run_until_checkpoint(cmd, env, workdir, again, signal.SIGKILL, log)
    output = log_path.read_text()
    assert status == -signal.SIGKILL, output[-3000:]
    assert f"Resumed from the checkpoint of step {stopped.group(1)}" in output
    assert STEPS not in steps_on_disk(workdir), "the run finished before SIGKILL"

    resumed_from = steps_on_disk(workdir)[-1]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Resumed from the checkpoint of step {resumed_from}" in done.stdout
    assert_bitwise_equal(saved_state(workdir, STEPS), saved_state(reference, STEPS))


# --- Kills while a checkpoint is being written ---------------------------------------------

CRASH_DRIVER = textwrap.dedent(
    '''
    """Saves checkpoints in a loop in a child, SIGKILLs it at random moments, checks each time.

    The parent only imports (it never starts JAX), so that forking it is safe.
    """
    import glob, json, os, random, signal, sys, time

    import numpy as np

    from gan_jax import checkpoint
    from gan_jax.state import TrainState

    SIZE = 1 << 18  # float32 values in the big leaf: 1 MiB, so that saves take a while.


    def states(step):
        def one(offset):
            return TrainState(
                step=step, apply_fn=None, tx=None, opt_state={},
                params={"w": np.arange(SIZE, dtype=np.float32) + step + offset},
                batch_stats={"mean": np.full(16, step + offset, np.float32)},
            )
        return one(0.0), one(0.5)


    def save_forever(directory):
        import jax
        ckpt = checkpoint.Checkpointer(directory, keep=2, owner=True)
        step = ckpt.latest_step() or 0
        while True:
            step += 1
            g, d = states(step)
            ckpt.save(step, g, d, jax.random.key(step), {})


    def check(directory):
        """None if the newest complete checkpoint is exactly what was saved, and saving goes on."""
        import jax
        ckpt = checkpoint.Checkpointer(directory, keep=2, owner=True)
        if glob.glob(os.path.join(directory, "*orbax-checkpoint-tmp*")):
            return "a leftover of an interrupted save is still there"
        latest = ckpt.latest_step()
        if latest is None:
            return None if not os.listdir(directory) else f"stray entries {os.listdir(directory)}"
        g, d, rng, meta = ckpt.restore(*states(0), jax.random.key(0))
        want_g, want_d = states(latest)
        want_key = jax.random.key_data(jax.random.key(latest))
        if not (
            meta["step"] == latest
            and np.array_equal(g.params["w"], want_g.params["w"])
            and np.array_equal(d.batch_stats["mean"], want_d.batch_stats["mean"])
            and np.array_equal(jax.random.key_data(rng), want_key)
        ):
            return f"the checkpoint of step {latest} does not hold what was saved at that step"
        ckpt.save(latest + 1, *states(latest + 1), jax.random.key(latest + 1), {})
        ckpt.close()
        return None


    def in_child(fn, *args):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                problem = fn(*args)
                if problem:
                    print(problem, flush=True)
                code = 3 if problem else 0
            finally:
                os._exit(code)
        return pid


    def main(directory, trials, seed):
        rnd = random.Random(seed)
        report = {"killed_mid_save": 0, "failures": [], "steps": []}
        for trial in range(trials):
            pid = in_child(save_forever, directory)
            time.sleep(rnd.uniform(0.3, 2.0))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if glob.glob(os.path.join(directory, "*orbax-checkpoint-tmp*")):
                report["killed_mid_save"] += 1
            _, status = os.waitpid(in_child(check, directory), 0)
            if os.waitstatus_to_exitcode(status):
                report["failures"].append(trial)
            report["steps"].append(sorted(int(n) for n in os.listdir(directory) if n.isdigit()))
        print(json.dumps(report))


    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    '''
)


def test_kills_during_checkpoint_writes_never_leave_a_partial_checkpoint(tmp_path, env):
    trials = 16
    driver = tmp_path / "driver.py"
    driver.write_text(CRASH_DRIVER)
    result = subprocess.run(
        [sys.executable, str(driver), str(tmp_path / "ckpts"), str(trials), "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failures"] == [], result.stdout
    # The kills did land mid-write, and every trial made progress from the last one.
    assert report["killed_mid_save"] >= trials // 4, report
    newest = [steps[-1] for steps in report["steps"]]
    assert all(b > a for a, b in zip(newest, newest[1:], strict=False)), newest


# --- Bad input: one `error:` line and exit status 2 ---------------------------------------


def _image_folder(root) -> str:
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rng.integers(0, 256, (16 + 4 * i, 16, 3), dtype=np.uint8)  # Mixed sizes.
        Image.fromarray(pixels).save(folder / f"ok_{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return str(folder)


def _folder_config_file(root, config_file) -> str:
    """A config file for an image folder with one broken image (data_dir is set there:
    a field whose default is None cannot be set on the command line)."""
    folder = _image_folder(root)
    path = root / "folder_config.py"
    path.write_text(
        "import importlib.util\n\n"
        f"spec = importlib.util.spec_from_file_location('tiny', {config_file!r})\n"
        "tiny = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(tiny)\n\n\n"
        "def get_config():\n    config = tiny.get_config()\n"
        f"    config.dataset = 'folder:{folder}'\n"
        f"    config.data_dir = {str(root / 'tfds')!r}\n"
        "    return config\n"
    )
    return str(path)


def _bad_input_cases(root, config_file, reference):
    """name -> (extra flags, extra env, expected text of the error line)."""
    file_as_parent = root / "a_file"
    file_as_parent.write_text("")
    # Each its own folder and tfds data_dir: the two runs prepare them at the same time.
    (root / "fail").mkdir()
    (root / "skip").mkdir()
    fail_config = _folder_config_file(root / "fail", config_file)
    skip_config = _folder_config_file(root / "skip", config_file)
    other_arch = root / "other_arch"
    shutil.copytree(reference, other_arch)
    return {
        "unknown_field": (["--config.foo=1"], {}, "unknown config field 'foo'"),
        "wrong_type": (["--config.batch_size=abc"], {}, "--config.batch_size=abc"),
        "missing_config_file": (["--config=no/such/config.py"], {}, "could not load the config"),
        "image_size": (["--config.image_size=20"], {}, "image_size=20 is not supported"),
        "batch_vs_devices": (
            ["--config.batch_size=15"],
            {
                "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
                + " --xla_force_host_platform_device_count=2"
            },
            "not divisible by the 2 devices",
        ),
        "unwritable_workdir": (
            [f"--workdir={file_as_parent / 'run'}"],
            {},
            "is not writable",
        ),
        "unknown_dataset": (
            ["--config.dataset=no_such_dataset_anywhere"],
            {},
            "unknown dataset 'no_such_dataset_anywhere'",
        ),
        "unreadable_image": (
            [f"--config={fail_config}"],
            {},
            "broken.png",
        ),
        "other_architecture": (
            [f"--workdir={other_arch}", "--config.g_width=16"],
            {},
            "different architecture (g_width: checkpoint 8 vs config 16)",
        ),
        # Not an error: trains, leaving the broken image out.
        "skip_unreadable_image": (
            [f"--config={skip_config}", "--config.bad_images=skip", "--config.num_train_steps=4"],
            {},
            None,
        ),
    }


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory, config_file, reference, env):
    """Runs every bad-input case at once (they are independent) and collects the results."""
    root = tmp_path_factory.mktemp("bad_input")
    cases = _bad_input_cases(root, config_file, reference)

    def run(name):
        flags, extra_env, _ = cases[name]
        config = next((f[len("--config=") :] for f in flags if f.startswith("--config=")), None)
        flags = [f for f in flags if not f.startswith("--config=")]
        cmd = train_cmd(config or config_file, str(root / f"work_{name}"), *flags)
        return subprocess.run(
            cmd, cwd=REPO, env={**env, **extra_env}, capture_output=True, text=True, timeout=600
        )

    # The runs that read data go first: they take longest.
    names = sorted(
        cases,
        key=lambda n: (
            n
            not in (
                "skip_unreadable_image",
                "unreadable_image",
                "unknown_dataset",
                "other_architecture",
            )
        ),
    )
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(names, pool.map(run, names), strict=True))
    return root, cases, results


BAD_INPUTS = [
    "unknown_field",
    "wrong_type",
    "missing_config_file",
    "image_size",
    "batch_vs_devices",
    "unwritable_workdir",
    "unknown_dataset",
    "unreadable_image",
    "other_architecture",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_error_line_and_exit_status_2(bad_input_runs, case):
    _, cases, results = bad_input_runs
    result, expected = results[case], cases[case][2]
    lines = messages(result.stderr)
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert expected in lines[0]


def test_unreadable_images_can_be_skipped_with_a_count(bad_input_runs):
    root, _, results = bad_input_runs
    done = results["skip_unreadable_image"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"Skipped 1 unreadable image", done.stderr), done.stderr[-3000:]
    assert steps_on_disk(root / "work_skip_unreadable_image") == [4]
