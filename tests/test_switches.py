"""Every training switch on every parallel path, and with exact resume through the trainer.

Switches: the hinge, WGAN-GP and least-squares losses, lazy R1, n_dis, the
generator EMA, DiffAugment, spectral norm and class-conditional training.

* Parallel: 4 steps of each configuration on 2 CPU devices (one worker process,
  `parallel_worker.py`), with `parallel="auto"` (jit + shard_map) and "pmap",
  against this process's one device fed the same global batches. The reference
  runs the trainer's own training function ("auto" on one device, which
  `test_parallel.py` checks against plain `jax.jit(train_step)`), so that the
  resume test below reuses its compilation.
  The metrics agree to 1e-5 relative as in `test_parallel.py`, every state array
  to 1e-4 of its largest magnitude (measured: up to 1.4e-5). The devices sum in
  another order, and a parameter whose gradient is below Adam's epsilon (a
  per-class BatchNorm shift of the conditional generator, say) moves by about
  lr * g / eps, so that rounding shows in it undamped.
* Resume: the trainer run 4 steps straight, and 2 steps, stopped, then resumed
  to 4; the step-4 checkpoints (both states and the RNG key) agree bitwise.

The default run checks one configuration with all switches but the gradient
penalties on at once (one compilation per parallel mode; the penalties'
double backward passes would double it); the `slow` tests check each switch on
its own, the losses and penalties with the DCGAN's BatchNorm discriminator.
"""

from __future__ import annotations

import os
import sys

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

import gan_jax

sys.path.insert(0, os.path.dirname(__file__))
import parallel_worker  # noqa: E402
from test_parallel import assert_metrics_close, assert_states_close, run_workers  # noqa: E402
from test_trainer import assert_bitwise_equal, saved_state  # noqa: E402

STEPS = 4
DEVICES = 2
STATE_TOL = 1e-4

SWITCHES = {
    "hinge": dict(loss="hinge"),
    "wgan_gp": dict(loss="wasserstein", gp_weight=10.0),
    "lsgan": dict(loss="least_squares"),
    "lazy_r1": dict(r1_gamma=1.0, r1_interval=2),
    "n_dis": dict(n_dis=2),
    "ema": dict(ema_decay=0.9),
    "diff_augment": dict(diff_augment="color,translation,cutout"),
    "spectral_norm": dict(spectral_norm=True),
    "conditional": dict(conditional=True, num_classes=10),
}
# Everything at once but R1 and WGAN-GP, which the slow tests cover.
ALL_SWITCHES = {
    "all_switches": dict(
        loss="hinge",
        n_dis=2,
        ema_decay=0.9,
        diff_augment="color,translation,cutout",
        spectral_norm=True,
        conditional=True,
        num_classes=10,
    )
}


def base_config() -> ml_collections.ConfigDict:
    """The tiny 16x16 digits DCGAN of the other tests."""
    config = gan_jax.default_config()
    config.update(
        dataset="digits",
        image_size=16,
        channels=1,
        g_width=8,
        d_width=8,
        latent_dim=16,
        batch_size=16,
        num_train_steps=STEPS,
        log_every_steps=2,
        sample_every_steps=0,
        checkpoint_every_steps=2,
        num_sample_images=20,
    )
    return config


def with_overrides(overrides: dict) -> ml_collections.ConfigDict:
    config = base_config()
    config.update(overrides)
    return config


# ----------------------------------------------------------------------------- parallel


def run_two_devices(cases: dict[str, dict], directory) -> dict:
    """Runs every case in both modes in one 2-device worker; returns its .npz paths."""
    jobs, outs = [], {}
    for name, overrides in cases.items():
        for mode in ("auto", "pmap"):
            out = directory / f"{name}_{mode}.npz"
            jobs.append(
                {
                    "kind": "steps",
                    "parallel": mode,
                    "steps": STEPS,
                    "overrides": overrides,
                    "out": str(out),
                }
            )
            outs[name, mode] = out
    spec = {"devices": DEVICES, "config": base_config().to_json(), "jobs": jobs}
    run_workers([spec], directory)
    return outs


def train_one_device(config: ml_collections.ConfigDict) -> tuple[dict, dict]:
    """The trainer's training function on this process's device: final state, metrics."""
    from gan_jax import trainer
    from gan_jax.parallel import Parallel

    init_key, train_key, _ = trainer.rng_streams(config.seed)
    par = Parallel(config)
    assert par.mode == "auto" and par.mesh.size == 1
    fn = par.compile()
    g, d = par.put_states(*gan_jax.create_train_states(config, init_key))
    key = par.put_states(train_key)
    batches = parallel_worker.global_batches(config, STEPS)
    metrics = []
    for i in range(STEPS):
        batch = jax.tree.map(lambda x, i=i: x[None, i], batches)
        g, d, m = fn(g, d, par.put_batch(batch), key)
        metrics.append({n: float(np.asarray(v)[0]) for n, v in m.items()})
    stacked = {n: np.array([m[n] for m in metrics]) for n in metrics[0]}
    return parallel_worker.flat_state(*par.get_states(g, d)), stacked


def check_like_one_device(overrides: dict, outs: dict, name: str) -> None:
    want_state, want_metrics = train_one_device(with_overrides(overrides))
    for mode in ("auto", "pmap"):
        z = np.load(outs[name, mode])
        state = {k[len("state/") :]: z[k] for k in z.files if k.startswith("state/")}
        metrics = {k[len("metrics/") :]: z[k] for k in z.files if k.startswith("metrics/")}
        what = f"{name} on {DEVICES} devices ({mode})"
        assert int(z["traces"]) == 1 and int(z["compiles_after_first"]) == 0, what
        assert_states_close(state, want_state, what, STATE_TOL)
        assert_metrics_close(metrics, want_metrics, what)


@pytest.fixture(scope="module")
def all_switches_runs(tmp_path_factory):
    return run_two_devices(ALL_SWITCHES, tmp_path_factory.mktemp("all_switches"))


@pytest.fixture(scope="module")
def single_switch_runs(tmp_path_factory):
    return run_two_devices(SWITCHES, tmp_path_factory.mktemp("switches"))


def test_all_switches_on_two_devices_train_like_one(all_switches_runs):
    check_like_one_device(ALL_SWITCHES["all_switches"], all_switches_runs, "all_switches")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_each_switch_on_two_devices_trains_like_one(single_switch_runs, name):
    check_like_one_device(SWITCHES[name], single_switch_runs, name)


# ----------------------------------------------------------------------------- resume


def check_exact_resume(overrides: dict, tmp_path) -> None:
    from gan_jax.trainer import train_and_evaluate

    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    config = with_overrides(overrides)
    assert train_and_evaluate(config, straight)["status"] == "finished"
    half = with_overrides(overrides)
    half.num_train_steps = STEPS // 2
    assert train_and_evaluate(half, resumed)["status"] == "finished"
    summary = train_and_evaluate(with_overrides(overrides), resumed)
    assert (summary["status"], summary["step"]) == ("finished", STEPS)
    assert_bitwise_equal(saved_state(resumed, STEPS), saved_state(straight, STEPS))


def test_all_switches_resume_exactly(tmp_path):
    overrides = dict(ALL_SWITCHES["all_switches"], sample_every_steps=STEPS)
    check_exact_resume(overrides, tmp_path)
    # A conditional run's sample grid has one row per class: 20 images, 10 rows of 2.
    grid = np.asarray(Image.open(tmp_path / "straight" / "samples" / "latest.png"))
    assert grid.shape[:2] == (10 * 16 + 9 * 2, 2 * 16 + 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_each_switch_resumes_exactly(name, tmp_path):
    check_exact_resume(SWITCHES[name], tmp_path)
