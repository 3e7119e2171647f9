"""The training step: purity, jit/pmap, the one-generator-forward trick, and a golden value."""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.jax_utils import replicate

import gan_jax
from gan_jax import losses

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "one_step.json")


def _setup(config, batch=8, seed=0):
    g_state, d_state = gan_jax.create_train_states(config, jax.random.key(seed))
    images = jax.random.uniform(
        jax.random.key(seed + 1),
        (batch, config.image_size, config.image_size, config.channels),
        minval=-1,
        maxval=1,
    )
    return g_state, d_state, images


def _checksum(tree) -> float:
    return float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(tree)))


def test_step_updates_both_networks_and_reports_metrics(tiny_config):
    g_state, d_state, images = _setup(tiny_config)
    g2, d2, metrics = jax.jit(gan_jax.train_step)(g_state, d_state, images, jax.random.key(3))
    assert int(g2.step) == 1 and int(d2.step) == 1
    assert set(metrics) == {"d_loss", "g_loss", "d_real", "d_fake", "d_grad_norm", "g_grad_norm"}
    assert all(m.shape == () and np.isfinite(m) for m in metrics.values())
    assert 0 < float(metrics["d_real"]) < 1 and 0 < float(metrics["d_fake"]) < 1
    for before, after in [(g_state, g2), (d_state, d2)]:
        changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before.params, after.params)
        assert all(jax.tree.leaves(changed))
        stats = jax.tree.map(
            lambda a, b: bool(jnp.any(a != b)), before.batch_stats, after.batch_stats
        )
        assert all(jax.tree.leaves(stats))


def test_step_is_pure_and_deterministic(tiny_config):
    g_state, d_state, images = _setup(tiny_config)
    step = jax.jit(gan_jax.train_step)
    a = step(g_state, d_state, images, jax.random.key(3))
    b = step(g_state, d_state, images, jax.random.key(3))
    c = step(g_state, d_state, images, jax.random.key(4))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert float(a[2]["g_loss"]) != float(c[2]["g_loss"])


def _reference_step(g_state, d_state, images, rng):
    """The straightforward formulation: separate G forwards for the D and G updates."""
    loss = losses.get_loss(d_state.spec.loss)
    z = gan_jax.sample_latent(rng, images.shape[0], d_state.spec.latent_dim)
    g_apply = functools.partial(g_state.model.apply, mutable=["batch_stats"])
    d_apply = functools.partial(d_state.model.apply, mutable=["batch_stats"])
    fakes, g_upd = g_apply(g_state.variables(), z)

    def d_loss_fn(p):
        r, upd = d_apply({"params": p, "batch_stats": d_state.batch_stats}, images)
        f, upd = d_apply(
            {"params": p, "batch_stats": upd["batch_stats"]}, jax.lax.stop_gradient(fakes)
        )
        return loss.d_loss(r, f), upd["batch_stats"]

    d_grads, d_stats = jax.grad(d_loss_fn, has_aux=True)(d_state.params)
    d_state = d_state.apply_gradients(grads=d_grads, batch_stats=d_stats)

    def g_loss_fn(p):
        x, _ = g_apply(g_state.variables(p), z)
        f, upd = d_apply(d_state.variables(), x)
        return loss.g_loss(f), upd["batch_stats"]

    g_grads, d_stats = jax.grad(g_loss_fn, has_aux=True)(g_state.params)
    g_state = g_state.apply_gradients(grads=g_grads, batch_stats=g_upd["batch_stats"])
    return g_state, d_state.replace(batch_stats=d_stats)


def test_single_generator_forward_equals_straightforward_step(tiny_config):
    g_state, d_state, images = _setup(tiny_config)
    g1, d1, _ = jax.jit(gan_jax.train_step)(g_state, d_state, images, jax.random.key(3))
    g2, d2 = jax.jit(_reference_step)(g_state, d_state, images, jax.random.key(3))
    for a, b in [
        (g1.params, g2.params),
        (d1.params, d2.params),
        (g1.batch_stats, g2.batch_stats),
        (d1.batch_stats, d2.batch_stats),
    ]:
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


def test_runs_under_pmap_like_jit(tiny_config):
    g_state, d_state, images = _setup(tiny_config)
    n = jax.local_device_count()
    step = jax.pmap(
        functools.partial(gan_jax.train_step, axis_name="batch"),
        axis_name="batch",
        in_axes=(0, 0, 0, None),
    )
    x = images.reshape(n, -1, *images.shape[1:])
    gp, dp, mp = step(replicate(g_state), replicate(d_state), x, jax.random.key(3))
    gj, dj, mj = jax.jit(gan_jax.train_step)(g_state, d_state, images, jax.random.key(3))
    np.testing.assert_allclose(mp["d_loss"][0], mj["d_loss"], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6), gp.params, gj.params
    )


def test_adam_hyperparameters_are_the_dcgan_ones():
    config = gan_jax.default_config()
    g_state, d_state = gan_jax.create_train_states(config, jax.random.key(0))
    assert (config.g_learning_rate, config.d_learning_rate, config.b1, config.b2) == (
        2e-4,
        2e-4,
        0.5,
        0.999,
    )
    # One Adam step moves every weight by ~lr (bias-corrected first step).
    grads = jax.tree.map(jnp.ones_like, d_state.params)
    new = d_state.apply_gradients(grads=grads)
    delta = jax.tree.map(lambda a, b: np.asarray(a - b), d_state.params, new.params)
    np.testing.assert_allclose(
        np.concatenate([d.ravel() for d in jax.tree.leaves(delta)]), 2e-4, rtol=1e-3
    )
    assert isinstance(optax.global_norm(grads), jax.Array)


def _golden_values():
    config = gan_jax.default_config()
    g_state, d_state, images = _setup(config, batch=16, seed=0)
    g, d, m = jax.jit(gan_jax.train_step)(g_state, d_state, images, jax.random.key(42))
    return {
        "d_loss": float(m["d_loss"]),
        "g_loss": float(m["g_loss"]),
        "d_real": float(m["d_real"]),
        "d_fake": float(m["d_fake"]),
        "g_params_abs_sum": _checksum(g.params),
        "d_params_abs_sum": _checksum(d.params),
        "g_batch_stats_abs_sum": _checksum(g.batch_stats),
        "d_batch_stats_abs_sum": _checksum(d.batch_stats),
    }


def test_one_step_golden_values():
    """One step at the default config against stored values.

    If this fails after a change that is meant to change the numbers (a new
    initialisation, loss, or model), regenerate the file with
    `python tests/test_step.py --update-golden` and say why in the commit. A
    failure after a change that should not alter the maths (a refactor, a speed-up)
    is a bug.
    """
    with open(GOLDEN) as f:
        golden = json.load(f)
    values = _golden_values()
    for name, expected in golden.items():
        np.testing.assert_allclose(values[name], expected, rtol=2e-5, err_msg=name)


if __name__ == "__main__":
    import sys

    if "--update-golden" in sys.argv:
        os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
        with open(GOLDEN, "w") as f:
            json.dump(_golden_values(), f, indent=2)
        print(f"wrote {GOLDEN}")
