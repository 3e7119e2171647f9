"""The tiny DCGAN most tests train: 16x16 grayscale on the embedded digits, widths 8.

A step takes milliseconds and compiles in seconds. Tests that need other logging or
checkpoint intervals pass them as overrides; tests that share compiled programs (within
a run, or through the persistent compilation cache) must agree on the model fields.
"""

from __future__ import annotations

import ml_collections

# The model and data: what decides the compiled programs.
MODEL = dict(
    dataset="digits",
    image_size=16,
    channels=1,
    g_width=8,
    d_width=8,
    latent_dim=16,
    batch_size=16,
)
# A short run that logs, samples and saves.
RUN = dict(
    num_train_steps=8,
    log_every_steps=2,
    sample_every_steps=4,
    checkpoint_every_steps=4,
    num_sample_images=4,
)


def config(**overrides) -> ml_collections.ConfigDict:
    """The default config with the tiny model, the short run and `overrides`."""
    from gan_jax import default_config

    config = default_config()
    config.update({**MODEL, **RUN, **overrides})
    return config
