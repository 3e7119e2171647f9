"""The pure GAN training step and sampling.

`train_step` is a pure function of `(g_state, d_state, batch, rng)`. It runs as
it is under `jax.jit` (one device, or a batch sharded over a mesh: BatchNorm and
gradients are then those of the global batch by construction) and under
`jax.pmap` / `shard_map` with `axis_name` set (gradients and BatchNorm statistics
are averaged over that axis, and every per-example random draw is that of the
global batch, so the result does not depend on the device count).

A batch is an image array, or for a class-conditional model
(`GANSpec.num_classes > 0`) a dict `{"image": images, "label": labels}`.

`train_step` composes `draw` (the step's random draws), `generator_forward`
(G's one forward pass), `discriminator_update` and `generator_turn` (which runs
`generator_update` every `n_dis`-th step); the game's settings are `d_state.spec`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gan_jax.augment import diff_augment
from gan_jax.batch_rng import per_example
from gan_jax.losses import get_loss
from gan_jax.regularizers import gradient_penalty, r1_penalty
from gan_jax.state import GANSpec, TrainState

Metrics = dict[str, jax.Array]


def sample_latent(
    rng: jax.Array, batch_size: int, latent_dim: int, axis_name: str | None = None
) -> jax.Array:
    """Standard normal noise (batch_size, latent_dim).

    With `axis_name`, every device draws the global batch's noise and keeps its
    own slice, so the noise does not depend on how the batch is split.

    Example:
      >>> import jax, gan_jax
      >>> z = gan_jax.sample_latent(jax.random.key(0), 4, 16)
      >>> z.shape, z.dtype
      ((4, 16), dtype('float32'))
      >>> bool((z == gan_jax.sample_latent(jax.random.key(0), 4, 16)).all())  # same key
      True
    """

    def sample(key, n):
        return jax.random.normal(key, (n, latent_dim), jnp.float32)

    return per_example(sample, rng, batch_size, axis_name)


def sample_labels(
    rng: jax.Array, batch_size: int, num_classes: int, axis_name: str | None = None
) -> jax.Array:
    """Uniformly random class labels (batch_size,) int32, split over devices like the noise."""

    def sample(key, n):
        return jax.random.randint(key, (n,), 0, num_classes, jnp.int32)

    return per_example(sample, rng, batch_size, axis_name)


def balanced_labels(n: int, num_classes: int, offset: int = 0) -> jax.Array:
    """Labels (n,) cycling through the classes: (offset + i) % num_classes.

    Example:
      >>> balanced_labels(5, 3).tolist()
      [0, 1, 2, 0, 1]
    """
    return (jnp.arange(n, dtype=jnp.int32) + offset) % num_classes


def class_grid_latents(
    rng: jax.Array, num: int, num_classes: int, latent_dim: int
) -> tuple[jax.Array, jax.Array, int]:
    """Inputs of a sample grid with one row per class: `(z, labels, per_class)`.

    `per_class = max(1, num // num_classes)` images per class; column j of every row
    has the same noise, so the rows show the classes in the same styles.
    """
    per_class = max(1, num // num_classes)
    z = jnp.tile(sample_latent(rng, per_class, latent_dim), (num_classes, 1))
    labels = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), per_class)
    return z, labels, per_class


def split_batch(batch: Any, num_classes: int) -> tuple[jax.Array, jax.Array | None]:
    """`(images, labels)` of a batch; labels are None for an unconditional model."""
    if isinstance(batch, Mapping):
        images, labels = batch["image"], batch.get("label")
    else:
        images, labels = batch, None
    if not num_classes:
        return images, None
    if labels is None:
        raise ValueError(
            "the model is class-conditional: pass batches {'image': images, 'label': labels} "
            "(the input pipeline does so with config.conditional=True)."
        )
    return images, labels.astype(jnp.int32)


class Draws(NamedTuple):
    """The random draws of one step, the same however the batch is split over devices."""

    z: jax.Array  # the generator's noise (N, latent_dim)
    fake_labels: jax.Array | None  # the fake images' classes (N,) of a conditional model
    aug_key: jax.Array  # DiffAugment of D's inputs
    gp_key: jax.Array  # the gradient penalty's interpolation weights


class GeneratorPass(NamedTuple):
    """The generator's one forward pass of a step, shared by both updates."""

    fakes: jax.Array  # G(z), (N, H, W, C)
    vjp: Callable[[jax.Array], tuple[Any]]  # d loss / d fakes -> d loss / d G's params
    batch_stats: Any  # G's BatchNorm statistics after the pass


class DiscriminatorUpdate(NamedTuple):
    """What the discriminator update reports besides its new state."""

    loss: jax.Array
    real_logits: jax.Array  # D(x) before the update
    fake_logits: jax.Array  # D(G(z)) before the update
    grads: Any  # the (device-averaged) gradients of `loss`
    penalties: Metrics  # the unweighted R1 and gradient penalties that are enabled


def draw(rng: jax.Array, n: int, spec: GANSpec, axis_name: str | None = None) -> Draws:
    """This step's noise, fake labels and augmentation and penalty keys from its `rng`."""
    z = sample_latent(rng, n, spec.latent_dim, axis_name)
    aug_key, gp_key = jax.random.split(jax.random.fold_in(rng, 1))
    fake_labels = None
    if spec.num_classes:
        fake_labels = sample_labels(jax.random.fold_in(rng, 2), n, spec.num_classes, axis_name)
    return Draws(z, fake_labels, aug_key, gp_key)


def generator_forward(
    g_state: TrainState, draws: Draws, axis_name: str | None = None
) -> GeneratorPass:
    """G(z) in train mode, with the `jax.vjp` that later takes the generator's gradients."""
    generator = _with_axis(g_state, axis_name)

    def forward(params):
        fakes, updates = generator.apply(
            g_state.variables(params),
            draws.z,
            mutable=["batch_stats"],
            **_labels(draws.fake_labels),
        )
        return fakes, updates["batch_stats"]

    fakes, vjp, batch_stats = jax.vjp(forward, g_state.params, has_aux=True)
    return GeneratorPass(fakes, vjp, batch_stats)


def discriminator_update(
    d_state: TrainState,
    images: jax.Array,
    real_labels: jax.Array | None,
    fakes: jax.Array,
    draws: Draws,
    axis_name: str | None = None,
) -> tuple[TrainState, DiscriminatorUpdate]:
    """One optimiser step of D on real images and (constant) fakes, with its penalties.

    The forward pass on the real images runs the spectral norm's power iteration.
    """
    spec = d_state.spec
    loss = get_loss(spec.loss)
    discriminator = _with_axis(d_state, axis_name)

    def loss_fn(params):
        real_in = _augment(images, 0, spec, draws.aug_key, axis_name)
        fake_in = _augment(fakes, 1, spec, draws.aug_key, axis_name)
        real_logits, stats = _apply_discriminator(
            discriminator, params, d_state.batch_stats, real_in, real_labels, update_sn=True
        )
        fake_logits, stats = _apply_discriminator(
            discriminator, params, stats, fake_in, draws.fake_labels
        )
        total = loss.d_loss(real_logits, fake_logits)

        def d_fn(x):  # D on real images' labels, for the penalties
            return _apply_discriminator(discriminator, params, stats, x, real_labels)[0]

        total, penalties = _add_penalties(
            total, d_fn, real_in, fake_in, d_state.step, spec, draws.gp_key, axis_name
        )
        return total, (real_logits, fake_logits, stats, penalties)

    (d_loss, (real_logits, fake_logits, stats, penalties)), grads = jax.value_and_grad(
        loss_fn, has_aux=True
    )(d_state.params)
    grads = _pmean(grads, axis_name)
    d_state = d_state.apply_gradients(grads=grads, batch_stats=stats)
    return d_state, DiscriminatorUpdate(d_loss, real_logits, fake_logits, grads, penalties)


def generator_update(
    g_state: TrainState,
    d_state: TrainState,
    g_pass: GeneratorPass,
    draws: Draws,
    axis_name: str | None = None,
) -> tuple[TrainState, Any, jax.Array, jax.Array]:
    """One optimiser step of G against the updated D (and G's EMA).

    The gradients reach G's parameters through `g_pass.vjp`, without a second G
    forward. Returns `(g_state, D's BatchNorm statistics after this pass, g_loss,
    g_grad_norm)`.
    """
    loss = get_loss(d_state.spec.loss)
    discriminator = _with_axis(d_state, axis_name)

    def loss_fn(fakes):
        fake_in = _augment(fakes, 2, d_state.spec, draws.aug_key, axis_name)
        logits, stats = _apply_discriminator(
            discriminator, d_state.params, d_state.batch_stats, fake_in, draws.fake_labels
        )
        return loss.g_loss(logits), stats

    (g_loss, d_stats), fake_grads = jax.value_and_grad(loss_fn, has_aux=True)(g_pass.fakes)
    (grads,) = g_pass.vjp(fake_grads)
    grads = _pmean(grads, axis_name)
    g_state = g_state.apply_gradients(grads=grads, batch_stats=g_pass.batch_stats)
    return _update_ema(g_state), d_stats, g_loss, optax.global_norm(grads)


def generator_turn(
    g_state: TrainState,
    d_state: TrainState,
    g_pass: GeneratorPass,
    draws: Draws,
    fake_logits: jax.Array,
    axis_name: str | None = None,
) -> tuple[TrainState, TrainState, jax.Array, jax.Array]:
    """`generator_update` after every n_dis-th D step: `(g_state, d_state, g_loss, g_grad_norm)`.

    D's new BatchNorm statistics come from its pass in the G update. On the
    steps without one, g_loss is reported at the D step's `fake_logits` and
    g_grad_norm as 0.
    """
    spec = d_state.spec

    def update(g_state, d_stats):
        d_now = d_state.replace(batch_stats=d_stats)
        return generator_update(g_state, d_now, g_pass, draws, axis_name)

    def skip(g_state, d_stats):
        g_loss = get_loss(spec.loss).g_loss(fake_logits)
        return g_state, d_stats, g_loss, jnp.zeros((), jnp.float32)

    if spec.n_dis == 1:
        g_state, d_stats, g_loss, g_grad_norm = update(g_state, d_state.batch_stats)
    else:
        g_state, d_stats, g_loss, g_grad_norm = jax.lax.cond(
            d_state.step % spec.n_dis == 0, update, skip, g_state, d_state.batch_stats
        )
    return g_state, d_state.replace(batch_stats=d_stats), g_loss, g_grad_norm


def train_step(
    g_state: TrainState,
    d_state: TrainState,
    batch: Any,
    rng: jax.Array,
    axis_name: str | None = None,
) -> tuple[TrainState, TrainState, Metrics]:
    """One discriminator update, then one generator update.

    The generator runs forward once: its output feeds the discriminator update as
    a constant and the generator update through `jax.vjp`, as in the reference
    PyTorch loop. BatchNorm running statistics are updated by every train-mode
    forward, as in PyTorch. A spectrally normalised discriminator runs its power
    iteration once per step, in its forward pass on the real images.

    A conditional model draws the fake images' labels uniformly; R1 and the
    gradient penalty evaluate D with the real images' labels.

    Args:
      g_state, d_state: the states from `create_train_states`.
      batch: float32 images (N, H, W, C) in [-1, 1] (the local batch under pmap);
        for a conditional model `{"image": images, "label": int labels (N,)}`.
      rng: a PRNG key for this step, e.g. `jax.random.fold_in(key, step)`.
      axis_name: the mapped axis under pmap/shard_map, else None.

    Returns:
      The new states and scalar metrics: `d_loss`, `g_loss`, `d_real` and
      `d_fake` (mean D(x) and D(G(z)) as probabilities, before the D update),
      and the global gradient norms `d_grad_norm`, `g_grad_norm`.

    Example:
      >>> import jax, jax.numpy as jnp, gan_jax
      >>> config = gan_jax.default_config()
      >>> g_state, d_state = gan_jax.create_train_states(config, jax.random.key(0))
      >>> images = jnp.zeros((8, 32, 32, 3))
      >>> step = jax.jit(gan_jax.train_step)
      >>> g_state, d_state, metrics = step(g_state, d_state, images, jax.random.key(1))
      >>> sorted(metrics)[:4], int(g_state.step)
      (['d_fake', 'd_grad_norm', 'd_loss', 'd_real'], 1)
    """
    spec = d_state.spec
    images, real_labels = split_batch(batch, spec.num_classes)
    draws = draw(rng, images.shape[0], spec, axis_name)
    g_pass = generator_forward(g_state, draws, axis_name)
    d_state, d = discriminator_update(d_state, images, real_labels, g_pass.fakes, draws, axis_name)
    g_state, d_state, g_loss, g_grad_norm = generator_turn(
        g_state, d_state, g_pass, draws, d.fake_logits, axis_name
    )
    metrics = {
        "d_loss": d.loss,
        "g_loss": g_loss,
        "d_real": jnp.mean(jax.nn.sigmoid(d.real_logits)),
        "d_fake": jnp.mean(jax.nn.sigmoid(d.fake_logits)),
        "d_grad_norm": optax.global_norm(d.grads),
        "g_grad_norm": g_grad_norm,
        **d.penalties,
    }
    return g_state, d_state, _pmean(metrics, axis_name)


def _with_axis(state: TrainState, axis_name: str | None) -> Any:
    return state.model if axis_name is None else state.model.clone(axis_name=axis_name)


def _pmean(tree: Any, axis_name: str | None) -> Any:
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def _augment(x: jax.Array, i: int, spec: GANSpec, key: jax.Array, axis_name: str | None):
    """D's i-th input of the step under the DiffAugment policy (x itself without one)."""
    if not spec.diff_augment:
        return x
    return diff_augment(x, jax.random.fold_in(key, i), spec.diff_augment, axis_name)


def _apply_discriminator(
    discriminator: Any,
    params: Any,
    batch_stats: Any,
    x: jax.Array,
    labels: jax.Array | None,
    update_sn: bool = False,
) -> tuple[jax.Array, Any]:
    """D's train-mode logits and BatchNorm statistics; `update_sn` runs the power iteration."""
    kwargs = _labels(labels)
    if getattr(discriminator, "spectral_norm", False):
        kwargs["update_sn"] = update_sn
    logits, updates = discriminator.apply(
        {"params": params, "batch_stats": batch_stats}, x, mutable=["batch_stats"], **kwargs
    )
    return logits, updates["batch_stats"]


def _add_penalties(
    total: jax.Array,
    d_fn: Callable[[jax.Array], jax.Array],
    real_in: jax.Array,
    fake_in: jax.Array,
    step: jax.Array,
    spec: GANSpec,
    gp_key: jax.Array,
    axis_name: str | None,
) -> tuple[jax.Array, Metrics]:
    """D's loss plus the enabled penalties (R1, lazily every r1_interval steps; WGAN-GP)."""
    penalties = {}
    if spec.r1_gamma:
        penalties["r1_penalty"] = _lazy(spec.r1_interval, step, lambda: r1_penalty(d_fn, real_in))
        total = total + 0.5 * spec.r1_gamma * spec.r1_interval * penalties["r1_penalty"]
    if spec.gp_weight:
        penalties["gradient_penalty"] = gradient_penalty(d_fn, real_in, fake_in, gp_key, axis_name)
        total = total + spec.gp_weight * penalties["gradient_penalty"]
    return total, penalties


def _labels(labels: jax.Array | None) -> dict[str, jax.Array]:
    """The `labels` keyword of a conditional model's call (none for an unconditional one)."""
    return {} if labels is None else {"labels": labels}


def _lazy(interval: int, step: jax.Array, fn) -> jax.Array:
    """`fn()` on steps that are multiples of `interval`, else 0 (without computing it)."""
    if interval == 1:
        return fn()
    return jax.lax.cond(step % interval == 0, fn, lambda: jnp.zeros((), jnp.float32))


def _update_ema(g_state: TrainState) -> TrainState:
    """Moves the generator's EMA towards its new parameters (no-op when disabled)."""
    decay_max = g_state.spec.ema_decay
    if not decay_max:
        return g_state
    t = g_state.step.astype(jnp.float32)
    decay = jnp.minimum(decay_max, (1.0 + t) / (10.0 + t))
    ema = jax.tree.map(
        lambda e, p: decay * e + (1.0 - decay) * p, g_state.ema_params, g_state.params
    )
    return g_state.replace(ema_params=ema)


def generate(
    g_state: TrainState, rng: jax.Array, n: int, labels: jax.Array | None = None
) -> jax.Array:
    """`n` images in [-1, 1] from the generator in eval mode (running BatchNorm statistics).

    For a conditional model, `labels` (n,) picks the classes; by default they
    cycle through all classes (`balanced_labels`).

    Example:
      >>> import jax, gan_jax
      >>> g_state, _ = gan_jax.create_train_states(gan_jax.default_config(), jax.random.key(0))
      >>> gan_jax.generate(g_state, jax.random.key(1), 4).shape
      (4, 32, 32, 3)
    """
    z = sample_latent(rng, n, g_state.spec.latent_dim)
    return generate_from_latent(g_state, z, labels=labels)


def generate_from_latent(
    g_state: TrainState, z: jax.Array, use_ema: bool = True, labels: jax.Array | None = None
) -> jax.Array:
    """Images in [-1, 1] for the given latent vectors (eval-mode BatchNorm).

    Uses the generator's parameter EMA when the run keeps one (`config.ema_decay`)
    and `use_ema` is True. A conditional model takes `labels` (N,), by default
    `balanced_labels(N, num_classes)`; an unconditional one refuses labels.

    Example:
      >>> import jax, jax.numpy as jnp, gan_jax
      >>> config = gan_jax.default_config()
      >>> config.update(dict(image_size=16, channels=1, g_width=8, d_width=8, latent_dim=16))
      >>> g_state, _ = gan_jax.create_train_states(config, jax.random.key(0))
      >>> z = jnp.stack([jnp.zeros(16), jnp.zeros(16), jnp.ones(16)])
      >>> images = gan_jax.generate_from_latent(g_state, z)
      >>> images.shape, bool(jnp.abs(images).max() <= 1)
      ((3, 16, 16, 1), True)
      >>> bool((images[0] == images[1]).all()), bool((images[0] == images[2]).all())
      (True, False)
    """
    params = g_state.ema_params if use_ema and g_state.ema_params is not None else None
    if g_state.spec.num_classes and labels is None:
        labels = balanced_labels(z.shape[0], g_state.spec.num_classes)
    return g_state.model.apply(g_state.variables(params), z, train=False, **_labels(labels))
