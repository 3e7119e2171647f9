"""The training-step switches: EMA, n_dis, R1, WGAN-GP, DiffAugment and other losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gan_jax


def _run(config, steps=2):
    g, d = gan_jax.create_train_states(config, jax.random.key(0))
    shape = (8, config.image_size, config.image_size, config.channels)
    images = jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1)
    step = jax.jit(gan_jax.train_step)
    history = [(g, d)]
    for t in range(steps):
        g, d, metrics = step(g, d, images, jax.random.key(10 + t))
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
    tiny_config.update(dict(r1_gamma=1.0, r1_interval=2))
    g, d = gan_jax.create_train_states(tiny_config, jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (8, 16, 16, 1), minval=-1, maxval=1)
    step = jax.jit(gan_jax.train_step)
    penalties = []
    for t in range(3):
        g, d, m = step(g, d, images, jax.random.key(t))
        penalties.append(float(m["r1_penalty"]))
    # D steps 0 and 2 (before their update) apply the penalty; step 1 does not.
    assert penalties[0] > 0 and penalties[1] == 0 and penalties[2] > 0


def test_invalid_switches_are_clear_errors(tiny_config):
    tiny_config.diff_augment = "color,mixup"
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        gan_jax.create_train_states(tiny_config, jax.random.key(0))
    tiny_config.diff_augment = ""
    tiny_config.ema_decay = 1.5
    with pytest.raises(ValueError, match="ema_decay=1.5"):
        gan_jax.create_train_states(tiny_config, jax.random.key(0))
