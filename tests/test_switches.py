"""The training switches: what each does in the step, on every parallel path, and with
exact resume through the trainer.

Switches: the hinge, WGAN-GP and least-squares losses, lazy R1, n_dis, the
generator EMA, DiffAugment, spectral norm, class-conditional training and the
learning-rate schedules.

* The step: `jax.jit(train_step)` on one device, a few steps of each switch: the
  EMA follows its ramped decay, n_dis holds the generator back, R1 is computed on
  its steps only, every loss and penalty trains with finite metrics, and bad
  values are clear errors.
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
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tiny_gan
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
        lr_schedule="linear",
        lr_warmup_steps=1,
    )
}


def base_config() -> ml_collections.ConfigDict:
    """The tiny 16x16 digits DCGAN of the other tests."""
    return tiny_gan.config(
        num_train_steps=STEPS,
        sample_every_steps=0,
        checkpoint_every_steps=2,
        num_sample_images=20,
    )


def with_overrides(overrides: dict) -> ml_collections.ConfigDict:
    config = base_config()
    config.update(overrides)
    return config


# ----------------------------------------------------------------------------- the step

# One jitted function: a config seen before (same static state) is not traced again.
_step = jax.jit(gan_jax.train_step)


def _run(config, steps=2):
    g, d = gan_jax.create_train_states(config, jax.random.key(0))
    shape = (8, config.image_size, config.image_size, config.channels)
    images = jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1)
    history = [(g, d)]
    for t in range(steps):
        g, d, metrics = _step(g, d, images, jax.random.key(10 + t))
        history.append((g, d))
    return history, metrics


def test_ema_follows_the_ramped_decay(tiny_config):
    tiny_config.ema_decay = 0.9
    history, _ = _run(tiny_config, steps=2)
    (g0, _), (g1, _), (g2, _) = history
    # Step t (1-based) uses decay min(0.9, (1 + t) / (10 + t)).
    d1, d2 = min(0.9, 2 / 11), min(0.9, 3 / 12)
    expected = jax.tree.map(lambda e, p: d1 * e + (1 - d1) * p, g0.params, g1.params)
    expected = jax.tree.map(lambda e, p: d2 * e + (1 - d2) * p, expected, g2.params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g2.ema_params, expected
    )
    z = jnp.zeros((2, tiny_config.latent_dim))
    with_ema = gan_jax.generate_from_latent(g2, z)
    without = gan_jax.generate_from_latent(g2, z, use_ema=False)
    assert not np.allclose(with_ema, without)


def test_n_dis_updates_the_generator_every_n_steps(tiny_config):
    tiny_config.n_dis = 2
    history, _ = _run(tiny_config, steps=4)
    g_steps = [int(g.step) for g, _ in history]
    d_steps = [int(d.step) for _, d in history]
    assert d_steps == [0, 1, 2, 3, 4] and g_steps == [0, 0, 1, 1, 2]
    same = jax.tree.map(
        lambda a, b: bool(jnp.all(a == b)), history[0][0].params, history[1][0].params
    )
    assert all(jax.tree.leaves(same))


@pytest.mark.parametrize(
    "overrides,metric",
    [
        (dict(r1_gamma=10.0), "r1_penalty"),
        (dict(r1_gamma=10.0, r1_interval=2), "r1_penalty"),
        (dict(loss="wasserstein", gp_weight=10.0), "gradient_penalty"),
        (dict(loss="hinge", diff_augment="color,translation,cutout"), None),
        (dict(loss="least_squares"), None),
    ],
)
def test_switches_train_with_finite_metrics(tiny_config, overrides, metric):
    tiny_config.update(overrides)
    history, metrics = _run(tiny_config, steps=2)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    if metric:
        assert metric in metrics
        if overrides.get("r1_interval", 1) == 1:
            assert float(metrics[metric]) > 0
    g_before, g_after = history[0][0], history[-1][0]
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), g_before.params, g_after.params)
    assert all(jax.tree.leaves(moved))


def test_lazy_r1_is_computed_only_on_its_steps(tiny_config):
    # The settings of a case above: its compiled step is reused.
    tiny_config.update(dict(r1_gamma=10.0, r1_interval=2))
    g, d = gan_jax.create_train_states(tiny_config, jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (8, 16, 16, 1), minval=-1, maxval=1)
    penalties = []
    for t in range(3):
        g, d, m = _step(g, d, images, jax.random.key(t))
        penalties.append(float(m["r1_penalty"]))
    # D steps 0 and 2 (before their update) apply the penalty; step 1 does not.
    assert penalties[0] > 0 and penalties[1] == 0 and penalties[2] > 0


def test_lr_warm_up_starts_from_zero(tiny_config):
    tiny_config.update(dict(lr_schedule="linear", lr_warmup_steps=2, num_train_steps=8))
    history, _ = _run(tiny_config, steps=2)
    (g0, d0), (g1, d1), (g2, d2) = history

    def same(a, b):
        return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a, b)))

    # Update 0 of the warm-up has learning rate 0; update 1 has half the base rate.
    assert same(d0.params, d1.params) and same(g0.params, g1.params)
    assert not same(d1.params, d2.params) and not same(g1.params, g2.params)


def test_lr_schedules_span_each_optimisers_updates(tiny_config):
    from gan_jax.state import learning_rates

    tiny_config.update(dict(num_train_steps=100, n_dis=5, lr_warmup_steps=10))
    tiny_config.update(dict(g_learning_rate=1e-4, d_learning_rate=4e-4))
    for schedule in ("linear", "cosine"):
        tiny_config.lr_schedule = schedule
        g, d = learning_rates(tiny_config)
        # G makes 20 updates (2 of warm-up), D 100 (10 of warm-up).
        np.testing.assert_allclose([g(0), g(1), g(2), g(20)], [0, 5e-5, 1e-4, 0], atol=1e-9)
        np.testing.assert_allclose([d(0), d(5), d(10), d(100)], [0, 2e-4, 4e-4, 0], atol=1e-9)
        assert 0 < g(11) < 1e-4 and 0 < d(55) < 4e-4
    np.testing.assert_allclose(float(d(55)), 2e-4, rtol=1e-5)  # cosine: half-way
    tiny_config.update(dict(lr_schedule="constant", lr_warmup_steps=0))
    assert learning_rates(tiny_config) == (1e-4, 4e-4)  # a float: no schedule state


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(lr_schedule="step"), "unknown lr_schedule 'step'"),
        (dict(lr_warmup_steps=4), "lr_warmup_steps must be at least 0 and below"),
        (dict(lr_warmup_steps=-1), "lr_warmup_steps must be at least 0"),
    ],
)
def test_bad_lr_schedules_are_clear_errors(tiny_config, overrides, message):
    from gan_jax.errors import ConfigError
    from gan_jax.trainer import validate_config

    tiny_config.update(dict(num_train_steps=4, **overrides))
    with pytest.raises(ConfigError, match=message):
        validate_config(tiny_config)


def test_a_run_without_schedule_does_not_resume_with_one(tiny_config):
    from gan_jax.checkpoint import architecture, check_compatible
    from gan_jax.errors import CheckpointError

    saved = {"architecture": architecture(tiny_config)}
    tiny_config.lr_schedule = "cosine"
    with pytest.raises(CheckpointError, match="lr_schedule: checkpoint False vs config True"):
        check_compatible(saved, tiny_config, "run")
    del saved["architecture"]["lr_schedule"]  # a checkpoint from before the schedules
    tiny_config.lr_schedule = "constant"
    check_compatible(saved, tiny_config, "run")


def test_invalid_switches_are_clear_errors(tiny_config):
    tiny_config.diff_augment = "color,mixup"
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        gan_jax.create_train_states(tiny_config, jax.random.key(0))
    tiny_config.diff_augment = ""
    tiny_config.ema_decay = 1.5
    with pytest.raises(ValueError, match="ema_decay=1.5"):
        gan_jax.create_train_states(tiny_config, jax.random.key(0))


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
