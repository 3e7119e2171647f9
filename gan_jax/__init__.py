"""gan_jax: DCGAN in JAX/Flax, a pure training step and a trainer."""

from gan_jax.config import default_config
from gan_jax.losses import LOSSES, get_loss
from gan_jax.models import Discriminator, Generator
from gan_jax.state import GANSpec, TrainState, count_params, create_train_states
from gan_jax.step import generate, generate_from_latent, sample_latent, train_step

__version__ = "0.1.0"

__all__ = [
    "LOSSES",
    "Discriminator",
    "GANSpec",
    "Generator",
    "TrainState",
    "count_params",
    "create_train_states",
    "default_config",
    "generate",
    "generate_from_latent",
    "get_loss",
    "sample_latent",
    "train_step",
]
