import jax

import gan_jax

config = gan_jax.default_config()
config.update(dict(dataset="digits", image_size=16, channels=1))  # bundled data, no download
init_key, train_key = jax.random.split(jax.random.key(config.seed))
g_state, d_state = gan_jax.create_train_states(config, init_key)
batches = gan_jax.create_input_iter(config, process_batch_size=config.batch_size)
train_step = jax.jit(gan_jax.train_step)  # pure: (states, images, rng) -> (states, metrics)
for step in range(500):
    rng = jax.random.fold_in(train_key, step)
    g_state, d_state, metrics = train_step(g_state, d_state, next(batches), rng)
print({name: round(float(value), 3) for name, value in metrics.items()})
images = gan_jax.generate(g_state, jax.random.key(1), 64)  # (64, 16, 16, 1) in [-1, 1]
gan_jax.save_png("my_run/samples.png", gan_jax.make_grid(images))  # my_run/ is created
gan_jax.save_checkpoint("my_run/checkpoints", g_state, d_state, config=config)
