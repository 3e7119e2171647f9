"""GAN losses against hand-computed values, including extreme logits."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import losses


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def test_non_saturating_matches_hand_computed_values():
    real = jnp.array([2.0, -1.0])
    fake = jnp.array([0.5, -3.0])
    # D minimises -[log D(x) + log(1 - D(G(z)))], D = sigmoid.
    expected_d = -np.mean([_log_sigmoid(2.0), _log_sigmoid(-1.0)]) - np.mean(
        [_log_sigmoid(-0.5), _log_sigmoid(3.0)]
    )
    expected_g = -np.mean([_log_sigmoid(0.5), _log_sigmoid(-3.0)])
    np.testing.assert_allclose(losses.d_loss_non_saturating(real, fake), expected_d, rtol=1e-6)
    np.testing.assert_allclose(losses.g_loss_non_saturating(fake), expected_g, rtol=1e-6)
    # At logits 0, D = 1/2: L_D = 2 log 2 and L_G = log 2.
    zero = jnp.zeros(4)
    np.testing.assert_allclose(losses.d_loss_non_saturating(zero, zero), 2 * math.log(2), 1e-6)
    np.testing.assert_allclose(losses.g_loss_non_saturating(zero), math.log(2), rtol=1e-6)


def test_extreme_logits_are_finite_with_the_right_limits():
    big = jnp.array([100.0])
    # A confident, correct D: loss ~ 0; a confidently fooled D: loss ~ 100.
    np.testing.assert_allclose(losses.d_loss_non_saturating(big, -big), 0.0, atol=1e-30)
    np.testing.assert_allclose(losses.d_loss_non_saturating(-big, big), 200.0, rtol=1e-6)
    np.testing.assert_allclose(losses.g_loss_non_saturating(-big), 100.0, rtol=1e-6)
    np.testing.assert_allclose(losses.g_loss_non_saturating(big), 0.0, atol=1e-30)
    for name, loss in losses.LOSSES.items():
        for r, f in [(big, -big), (-big, big)]:
            grads = jax.grad(lambda r, f, loss=loss: loss.d_loss(r, f), argnums=(0, 1))(r, f)
            assert all(np.isfinite(np.asarray(g)).all() for g in grads), name
            assert np.isfinite(float(loss.g_loss(f))), name


def test_generator_gradient_does_not_saturate():
    # The point of the non-saturating loss: a confident D still gives G a gradient.
    g = jax.grad(lambda f: losses.g_loss_non_saturating(f))(jnp.array([-10.0]))
    assert abs(float(g[0])) > 0.99


def test_other_losses_hand_computed():
    real, fake = jnp.array([0.5, 2.0]), jnp.array([-2.0, 0.0])
    np.testing.assert_allclose(losses.d_loss_hinge(real, fake), (0.5 + 0.0) / 2 + (0 + 1) / 2)
    np.testing.assert_allclose(losses.g_loss_hinge(fake), 1.0)
    np.testing.assert_allclose(losses.d_loss_wasserstein(real, fake), -1.0 - 1.25)
    np.testing.assert_allclose(
        losses.d_loss_least_squares(real, fake), 0.5 * (0.25 + 1) / 2 + 0.5 * (4 + 0) / 2
    )
    np.testing.assert_allclose(losses.g_loss_least_squares(fake), 0.5 * (9 + 1) / 2)


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="unknown loss 'bce'.*hinge"):
        losses.get_loss("bce")
