"""GAN losses on discriminator logits, numerically stable at any logit.

Each loss is a pair of functions of logits (`real` = D(x), `fake` = D(G(z))):
`d_loss(real, fake)` is what the discriminator minimises and `g_loss(fake)` what
the generator minimises. To add a loss, write the two functions and register
them in `LOSSES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class GANLoss(NamedTuple):
    d_loss: Callable[[jax.Array, jax.Array], jax.Array]
    g_loss: Callable[[jax.Array], jax.Array]


def d_loss_non_saturating(real: jax.Array, fake: jax.Array) -> jax.Array:
    """-[log D(x) + log(1 - D(G(z)))] with D = sigmoid(logit).

    -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).
    """
    return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))


def g_loss_non_saturating(fake: jax.Array) -> jax.Array:
    """-log D(G(z)), the non-saturating generator loss of Goodfellow et al. (2014)."""
    return jnp.mean(jax.nn.softplus(-fake))


def d_loss_hinge(real: jax.Array, fake: jax.Array) -> jax.Array:
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] (Lim & Ye 2017; Miyato et al. 2018)."""
    return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


def g_loss_hinge(fake: jax.Array) -> jax.Array:
    """-E[D(G(z))]."""
    return -jnp.mean(fake)


def d_loss_wasserstein(real: jax.Array, fake: jax.Array) -> jax.Array:
    """E[D(G(z))] - E[D(x)]; pair it with a gradient penalty (WGAN-GP)."""
    return jnp.mean(fake) - jnp.mean(real)


def d_loss_least_squares(real: jax.Array, fake: jax.Array) -> jax.Array:
    """0.5 E[(D(x) - 1)^2] + 0.5 E[D(G(z))^2] (LSGAN, Mao et al. 2017)."""
    return 0.5 * jnp.mean(jnp.square(real - 1.0)) + 0.5 * jnp.mean(jnp.square(fake))


def g_loss_least_squares(fake: jax.Array) -> jax.Array:
    """0.5 E[(D(G(z)) - 1)^2]."""
    return 0.5 * jnp.mean(jnp.square(fake - 1.0))


LOSSES: dict[str, GANLoss] = {
    "non_saturating": GANLoss(d_loss_non_saturating, g_loss_non_saturating),
    "hinge": GANLoss(d_loss_hinge, g_loss_hinge),
    "wasserstein": GANLoss(d_loss_wasserstein, g_loss_hinge),
    "least_squares": GANLoss(d_loss_least_squares, g_loss_least_squares),
}


def get_loss(name: str) -> GANLoss:
    """Returns the loss pair registered under `name`.

    Example:
      >>> import jax.numpy as jnp, gan_jax
      >>> hinge = gan_jax.get_loss("hinge")
      >>> real, fake = jnp.array([2.0, 0.5]), jnp.array([-2.0, 0.5])
      >>> # d_loss = mean(relu(1 - real)) + mean(relu(1 + fake)) = 0.25 + 0.75
      >>> float(hinge.d_loss(real, fake)), float(hinge.g_loss(fake))
      (1.0, 0.75)
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; use one of {sorted(LOSSES)} (--config.loss=...).")
    return LOSSES[name]
