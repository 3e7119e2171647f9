"""The classic DCGAN on CIFAR-10: 32x32x3, batch 128, Adam 2e-4 (b1 0.5), non-saturating loss."""

from gan_jax.config import default_config


def get_config():
    return default_config()
