"""Soak: 2,000 steps killed and restarted every 300 steps end where an uninterrupted run ends.

Also checks that the uninterrupted run's resident memory stays flat: a leak per
step or per checkpoint would show as growth between the first and the last third.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tiny_gan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 2000
KILL_EVERY = 300
# RSS may grow by this much between a third of the run and its end (allocator noise).
RSS_SLACK_BYTES = 32 << 20
FIELDS = dict(
    tiny_gan.MODEL,
    g_width=4,
    d_width=4,
    batch_size=8,
    num_train_steps=STEPS,
    steps_per_dispatch=10,
    log_every_steps=50,
    sample_every_steps=0,
    checkpoint_every_steps=50,
    keep_checkpoints=2,
    num_sample_images=4,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("soak")
    config = root / "soak_config.py"
    lines = [f"    config.{k} = {v!r}" for k, v in FIELDS.items()]
    config.write_text(
        "from gan_jax import default_config\n\n\ndef get_config():\n"
        "    config = default_config()\n" + "\n".join(lines) + "\n    return config\n"
    )
    env = dict(os.environ)
    if jax.config.jax_compilation_cache_dir:  # The persistent cache of conftest.
        env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return root, str(config), env


def steps_on_disk(workdir) -> list[int]:
    path = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(path) if n.isdigit()) if os.path.isdir(path) else []


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def start(config: str, workdir: str, env, log) -> subprocess.Popen:
    cmd = [sys.executable, os.path.join(REPO, "train.py"), f"--config={config}"]
    return subprocess.Popen(
        [*cmd, f"--workdir={workdir}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log
    )


def tail(path) -> str:
    with open(path) as f:
        return f.read()[-3000:]


def saved_state(workdir, step: int) -> dict[str, np.ndarray]:
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    leaves = jax.tree_util.tree_flatten_with_path(ocp.PyTreeCheckpointer().restore(path))[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


def test_soak_kill_and_restart_matches_an_uninterrupted_run_and_memory_is_flat(setup):
    root, config, env = setup

    straight, log = str(root / "straight"), root / "straight.log"
    child = start(config, straight, env, log.open("w"))
    samples: list[tuple[int, int]] = []  # (newest checkpoint step, RSS)
    while child.poll() is None:
        rss, steps = rss_bytes(child.pid), steps_on_disk(straight)
        if rss and steps:
            samples.append((steps[-1], rss))
        time.sleep(0.05)
    assert child.returncode == 0, tail(log)

    interrupted, log = str(root / "interrupted"), root / "interrupted.log"
    kills, target, sig = 0, KILL_EVERY, signal.SIGKILL
    while True:
        child = start(config, interrupted, env, log.open("a"))
        while child.poll() is None and not any(s >= target for s in steps_on_disk(interrupted)):
            time.sleep(0.01)
        if child.poll() is not None:
            break
        child.send_signal(sig)
        child.wait(timeout=120)
        expected = -signal.SIGKILL if sig == signal.SIGKILL else 75
        assert child.returncode == expected, tail(log)
        kills += 1
        target = (steps_on_disk(interrupted)[-1] // KILL_EVERY + 1) * KILL_EVERY
        sig = signal.SIGTERM if sig == signal.SIGKILL else signal.SIGKILL
    assert child.returncode == 0, tail(log)
    assert kills >= STEPS // KILL_EVERY - 1, kills

    a, b = saved_state(straight, STEPS), saved_state(interrupted, STEPS)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k].tobytes() != b[k].tobytes()] == []

    early = [rss for step, rss in samples if STEPS // 3 <= step < STEPS // 2]
    late = [rss for step, rss in samples if step >= 2 * STEPS // 3]
    assert early and late, f"too few memory samples: {len(samples)}"
    growth = max(late) - min(early)
    print(
        f"soak: {kills} kills; RSS {min(early) / 2**20:.0f} MiB at a third of the run, "
        f"at most {max(late) / 2**20:.0f} MiB in its last third ({len(samples)} samples)"
    )
    assert growth <= RSS_SLACK_BYTES, (
        f"RSS grew by {growth / 2**20:.1f} MiB from a third of the run to its end "
        f"({min(early) / 2**20:.0f} -> {max(late) / 2**20:.0f} MiB)"
    )
