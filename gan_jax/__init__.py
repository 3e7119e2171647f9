"""gan_jax: DCGAN in JAX/Flax, a pure training step and a trainer.

The public API, in the order a training script uses it:

* configuration: `default_config`
* models and states: `Generator`, `Discriminator`, `create_train_states`,
  `TrainState`, `GANSpec`, `count_params`
* the game: `train_step`, `LOSSES`, `GANLoss`, `get_loss`
* sampling: `generate`, `generate_from_latent`, `sample_latent`, `make_grid`, `save_png`
* data: `create_input_iter`, `iterate_images`
* the trainer: `train_and_evaluate`, `read_metrics`, `load_run`, `load_config`
* checkpoints: `save_checkpoint`, `restore_checkpoint`
* evaluation: the `metrics` subpackage (FID, KID, Inception Score)
* errors: `GanJaxError`, the base of the errors whose message names the fix

Names that need TensorFlow (data, trainer) or the Inception network (`metrics`)
are imported on first use, so `import gan_jax` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gan_jax.config import default_config
from gan_jax.errors import GanJaxError
from gan_jax.images import make_grid, save_png
from gan_jax.losses import LOSSES, GANLoss, get_loss
from gan_jax.models import Discriminator, Generator
from gan_jax.rundir import (
    load_config,
    load_run,
    read_metrics,
    restore_checkpoint,
    save_checkpoint,
)
from gan_jax.state import GANSpec, TrainState, count_params, create_train_states
from gan_jax.step import generate, generate_from_latent, sample_latent, train_step

if TYPE_CHECKING:
    from gan_jax import metrics
    from gan_jax.input_pipeline import create_input_iter, iterate_images
    from gan_jax.trainer import train_and_evaluate

__version__ = "0.1.0"

# Public name -> module it is imported from on first use.
_LAZY = {
    "create_input_iter": "gan_jax.input_pipeline",
    "iterate_images": "gan_jax.input_pipeline",
    "train_and_evaluate": "gan_jax.trainer",
    "metrics": "gan_jax.metrics",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gan_jax' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__ == f"gan_jax.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "LOSSES",
    "Discriminator",
    "GANLoss",
    "GANSpec",
    "GanJaxError",
    "Generator",
    "TrainState",
    "count_params",
    "create_input_iter",
    "create_train_states",
    "default_config",
    "generate",
    "generate_from_latent",
    "get_loss",
    "iterate_images",
    "load_config",
    "load_run",
    "make_grid",
    "metrics",
    "read_metrics",
    "restore_checkpoint",
    "sample_latent",
    "save_checkpoint",
    "save_png",
    "train_and_evaluate",
    "train_step",
]
