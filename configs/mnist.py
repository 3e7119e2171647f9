"""MNIST (60k 28x28 grayscale digits, resized to 32x32).

tfds downloads it by default; for an offline machine, set
`--config.archive_dir=DIR` to a directory with the four original IDX .gz files.
"""

from gan_jax.config import default_config


def get_config():
    config = default_config()
    config.dataset = "mnist"
    config.channels = 1
    config.num_train_steps = 10_000
    return config
