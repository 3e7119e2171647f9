"""A few minutes on a laptop CPU, offline: scikit-learn's bundled handwritten digits.

The 1,797 real 8x8 digits ship inside scikit-learn, so this runs without any
download; they are upscaled to 16x16 grayscale, where a narrower DCGAN learns
recognisable digits in a couple of thousand steps.
"""

from gan_jax.config import default_config


def get_config():
    config = default_config()
    config.dataset = "digits"
    config.image_size = 16
    config.channels = 1
    config.g_width = 32
    config.d_width = 32
    config.batch_size = 64
    config.num_train_steps = 2000
    config.log_every_steps = 100
    config.sample_every_steps = 500
    config.checkpoint_every_steps = 500
    return config
