"""Real Fashion-MNIST (60k 28x28 grayscale, resized to 32x32), prepared offline.

`archive_dir` points at the original IDX archive files; Debian's
`dataset-fashion-mnist` package installs them in /usr/share/datasets/fashion-mnist.
Set `--config.archive_dir=` (empty) to let tfds download the data instead.
"""

from gan_jax.config import default_config


def get_config():
    config = default_config()
    config.dataset = "fashion_mnist"
    config.archive_dir = "/usr/share/datasets/fashion-mnist"
    config.channels = 1
    config.batch_size = 128
    config.num_train_steps = 10_000
    config.log_every_steps = 100
    config.sample_every_steps = 1000
    config.checkpoint_every_steps = 1000
    return config
