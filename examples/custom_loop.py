"""Your own training loop around gan_jax's pure `train_step`, with an EMA of the generator."""

import os

import jax
import optax

import gan_jax

steps = int(os.environ.get("GAN_JAX_EXAMPLE_STEPS", 1000))
workdir = os.environ.get("GAN_JAX_EXAMPLE_WORKDIR", "/tmp/gan_jax_custom_loop")
config = gan_jax.default_config()
config.update(dict(dataset="digits", image_size=16, channels=1, g_width=32, d_width=32))
init_key, train_key, sample_key = jax.random.split(jax.random.key(config.seed), 3)
g_state, d_state = gan_jax.create_train_states(config, init_key)
batches = gan_jax.create_input_iter(config, process_batch_size=config.batch_size)
train_step = jax.jit(gan_jax.train_step)
ema_update = jax.jit(lambda new, old: optax.incremental_update(new, old, step_size=0.01))
ema_params = g_state.params

for step in range(1, steps + 1):
    rng = jax.random.fold_in(train_key, step)
    g_state, d_state, metrics = train_step(g_state, d_state, next(batches), rng)
    ema_params = ema_update(g_state.params, ema_params)
    if step % 100 == 0 or step == steps:
        print(f"step {step}: " + ", ".join(f"{k} {float(v):.3f}" for k, v in metrics.items()))

gan_jax.save_checkpoint(os.path.join(workdir, "checkpoints"), g_state, d_state, config=config)
samples = gan_jax.generate(g_state.replace(params=ema_params), sample_key, 64)
gan_jax.save_png(os.path.join(workdir, "ema_samples.png"), gan_jax.make_grid(samples))
