"""Training states of the generator and the discriminator.

Everything `train_step` needs to know about a run lives in the two states: the
parameters, BatchNorm statistics and optimiser state as pytree leaves, and the
modules and the loss settings as static (hashable) fields. `train_step` therefore
takes no static arguments and jits or pmaps as it is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from flax.training import train_state

from gan_jax import augment, models, sngan
from gan_jax.layers import num_stages
from gan_jax.losses import get_loss

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# `config.arch` -> (generator class, discriminator class).
ARCHITECTURES = {
    "dcgan": (models.Generator, models.Discriminator),
    "sngan_cnn": (sngan.Generator, sngan.Discriminator),
}


@dataclasses.dataclass(frozen=True)
class GANSpec:
    """Static settings of the adversarial game (hashable, so jit treats them as constants).

    Attributes:
      loss: a name registered in `gan_jax.losses.LOSSES`.
      latent_dim: size of the generator's input noise.
      n_dis: discriminator updates per generator update.
      r1_gamma: weight gamma of the R1 penalty (gamma / 2) E||grad D(x)||^2; 0 disables.
      r1_interval: apply R1 every this many D steps, scaled up to match (lazy R1).
      gp_weight: weight of the WGAN-GP gradient penalty; 0 disables.
      diff_augment: DiffAugment policy for D's inputs, e.g. "color,translation,cutout".
      ema_decay: decay of the generator's parameter EMA (0 disables), ramped up
        as min(decay, (1 + t) / (10 + t)) over the first generator steps.
      num_classes: classes of a class-conditional GAN (0: unconditional). Batches
        are then `{"image": ..., "label": ...}` and both networks take labels.
    """

    loss: str = "non_saturating"
    latent_dim: int = 100
    n_dis: int = 1
    r1_gamma: float = 0.0
    r1_interval: int = 1
    gp_weight: float = 0.0
    diff_augment: str = ""
    ema_decay: float = 0.0
    num_classes: int = 0


class TrainState(train_state.TrainState):
    """A flax `TrainState` with BatchNorm statistics and its (static) module."""

    batch_stats: Any = None
    # The generator's exponential moving average of `params` (None when disabled).
    ema_params: Any = None
    model: nn.Module = struct.field(pytree_node=False, default=None)
    spec: GANSpec = struct.field(pytree_node=False, default_factory=GANSpec)

    def variables(self, params: Any | None = None) -> dict[str, Any]:
        """The Flax variables dict, optionally with other `params`."""
        return {
            "params": self.params if params is None else params,
            "batch_stats": self.batch_stats,
        }


def num_classes(config: ml_collections.ConfigDict) -> int:
    """The classes of a conditional model (`config.num_classes`), 0 when unconditional."""
    if not config.get("conditional", False):
        return 0
    if config.num_classes < 1:
        raise ValueError(
            f"num_classes={config.num_classes} with conditional=True: set "
            "--config.num_classes to the dataset's number of classes (e.g. 10)."
        )
    return int(config.num_classes)


def make_models(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
    """The generator and discriminator described by `config` (`config.arch`, default "dcgan").

    Raises ValueError for settings no architecture supports (image size, dtype, arch).
    """
    num_stages(config.image_size)  # A clear error before any tracing.
    if config.dtype not in DTYPES:
        raise ValueError(
            f"unknown dtype {config.dtype!r}; use one of {sorted(DTYPES)} (--config.dtype=float32)."
        )
    arch = config.get("arch", "dcgan")
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"unknown arch {arch!r}; use one of {sorted(ARCHITECTURES)} (--config.arch=dcgan)."
        )
    generator_cls, discriminator_cls = ARCHITECTURES[arch]
    dtype = DTYPES[config.dtype]
    classes = num_classes(config)
    generator = generator_cls(
        image_size=config.image_size,
        channels=config.channels,
        width=config.g_width,
        dtype=dtype,
        subpixel=config.subpixel,
        num_classes=classes,
    )
    discriminator = discriminator_cls(
        image_size=config.image_size,
        channels=config.channels,
        width=config.d_width,
        dtype=dtype,
        num_classes=classes,
        spectral_norm=bool(config.get("spectral_norm", False)),
    )
    return generator, discriminator


def make_spec(config: ml_collections.ConfigDict) -> GANSpec:
    """The static game settings described by `config` (validates them)."""
    get_loss(config.loss)
    if config.diff_augment:
        augment.diff_augment(jnp.zeros((1, 8, 8, 1)), jax.random.key(0), config.diff_augment)
    if config.n_dis < 1 or config.r1_interval < 1:
        raise ValueError("n_dis and r1_interval must be at least 1.")
    if not 0.0 <= config.ema_decay < 1.0:
        raise ValueError(f"ema_decay={config.ema_decay} must be in [0, 1) (0 disables the EMA).")
    return GANSpec(
        loss=config.loss,
        latent_dim=config.latent_dim,
        n_dis=config.n_dis,
        r1_gamma=float(config.r1_gamma),
        r1_interval=config.r1_interval,
        gp_weight=float(config.gp_weight),
        diff_augment=config.diff_augment,
        ema_decay=float(config.ema_decay),
        num_classes=num_classes(config),
    )


LR_SCHEDULES = ("constant", "linear", "cosine")


def learning_rate(
    base: float, updates: int, warmup: int = 0, schedule: str = "constant"
) -> float | optax.Schedule:
    """The learning rate of an optimiser that makes `updates` updates: `base` or a schedule.

    "linear" and "cosine" decay from `base` to 0 at update `updates`; `warmup` updates
    of linear warm-up from 0 come first. A constant rate without warm-up stays a float,
    so that the optimiser state has no schedule counter (and checkpoints of such runs
    keep their layout).

    Example:
      >>> lr = learning_rate(1e-3, updates=100, warmup=10, schedule="linear")
      >>> [round(float(lr(t)), 6) for t in (0, 5, 10, 55, 100)]
      [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}; use one of {LR_SCHEDULES}.")
    if not 0 <= warmup < max(updates, 1):
        raise ValueError(
            f"lr_warmup_steps must be at least 0 and below num_train_steps; got {warmup} "
            f"warm-up updates of {updates}."
        )
    if schedule == "constant" and not warmup:
        return base
    rest = max(updates - warmup, 1)
    if schedule == "constant":
        decay = optax.constant_schedule(base)
    elif schedule == "linear":
        decay = optax.linear_schedule(base, 0.0, rest)
    else:
        decay = optax.cosine_decay_schedule(base, rest)
    if not warmup:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), decay], [warmup])


def learning_rates(
    config: ml_collections.ConfigDict,
) -> tuple[float | optax.Schedule, float | optax.Schedule]:
    """The generator's and the discriminator's learning rates (`config.lr_schedule`).

    Both follow the run's steps: D updates at every step, G at every `n_dis`-th, so
    G's schedule spans num_train_steps // n_dis updates (warm-up likewise).
    """
    # Runs saved before the schedules existed have no such fields: constant rates.
    schedule = config.get("lr_schedule", "constant")
    warmup = config.get("lr_warmup_steps", 0)
    steps, n_dis = config.num_train_steps, config.n_dis
    g = learning_rate(config.g_learning_rate, steps // n_dis, warmup // n_dis, schedule)
    d = learning_rate(config.d_learning_rate, steps, warmup, schedule)
    return g, d


def has_lr_schedule(config: ml_collections.ConfigDict) -> bool:
    """Whether the optimiser states carry a schedule counter (a checkpoint's layout)."""
    return config.get("lr_schedule", "constant") != "constant" or bool(
        config.get("lr_warmup_steps", 0)
    )


def _adam(
    learning_rate: float | optax.Schedule, config: ml_collections.ConfigDict
) -> optax.GradientTransformation:
    return optax.adam(learning_rate, b1=config.b1, b2=config.b2, eps=config.adam_eps)


def create_train_states(
    config: ml_collections.ConfigDict, rng: jax.Array
) -> tuple[TrainState, TrainState]:
    """Initialises `(g_state, d_state)`, each with its own Adam optimiser.

    Example:
      >>> import jax, gan_jax
      >>> config = gan_jax.default_config()
      >>> g_state, d_state = gan_jax.create_train_states(config, jax.random.key(0))
      >>> int(g_state.step), g_state.model.image_size
      (0, 32)
    """
    generator, discriminator = make_models(config)
    spec = make_spec(config)
    g_lr, d_lr = learning_rates(config)
    g_rng, d_rng = jax.random.split(rng)
    z = jnp.zeros((1, config.latent_dim), jnp.float32)
    x = jnp.zeros((1, config.image_size, config.image_size, config.channels), jnp.float32)
    labels = {"labels": jnp.zeros((1,), jnp.int32)} if spec.num_classes else {}
    g_vars = jax.jit(lambda k: generator.init(k, z, train=False, **labels))(g_rng)
    d_vars = jax.jit(lambda k: discriminator.init(k, x, train=False, **labels))(d_rng)
    g_state = TrainState.create(
        apply_fn=generator.apply,
        params=g_vars["params"],
        batch_stats=g_vars.get("batch_stats", {}),
        ema_params=g_vars["params"] if spec.ema_decay else None,
        tx=_adam(g_lr, config),
        model=generator,
        spec=spec,
    )
    d_state = TrainState.create(
        apply_fn=discriminator.apply,
        params=d_vars["params"],
        batch_stats=d_vars.get("batch_stats", {}),
        tx=_adam(d_lr, config),
        model=discriminator,
        spec=spec,
    )
    return g_state, d_state


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree.

    Example:
      >>> import jax, jax.numpy as jnp, gan_jax
      >>> generator = gan_jax.Generator(image_size=16, channels=1, width=8)
      >>> variables = generator.init(jax.random.key(0), jnp.zeros((1, 16)), train=False)
      >>> gan_jax.count_params(variables["params"])
      6320
      >>> gan_jax.count_params({"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)})
      16
    """
    return sum(int(x.size) for x in jax.tree.leaves(params))
