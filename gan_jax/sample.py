"""Writes samples of a trained run: `python -m gan_jax.sample --workdir DIR --out grid.png`.

The output depends only on the checkpoint and the flags: the same checkpoint and
flags give the same bytes. `--interpolate` writes a latent walk instead: each row
goes linearly from one random latent vector to another. For a class-conditional
run the grid has one row per class (`--num // classes` images each, the same noise
in every row), and walk row i shows class i % classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from gan_jax import cli, images
from gan_jax.errors import GanJaxError
from gan_jax.rundir import load_run
from gan_jax.step import (
    balanced_labels,
    class_grid_latents,
    generate_from_latent,
    sample_latent,
)


def _define_flags() -> None:
    # Defined only when run as a program, so importing this module next to other
    # absl programs (tests, notebooks) defines no flags.
    flags.DEFINE_string(
        "workdir", None, "Training workdir, or a directory written by gan_jax.save_checkpoint."
    )
    flags.DEFINE_string("out", "samples.png", "Output PNG path.")
    flags.DEFINE_integer("num", 64, "Number of images (rows of the walk with --interpolate).")
    flags.DEFINE_integer("seed", 0, "Noise seed; change it for other samples.")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
    flags.DEFINE_bool("interpolate", False, "Write latent interpolations.")
    flags.DEFINE_integer("frames", 10, "Images per interpolation row.")


def interpolation_latents(rng: jax.Array, rows: int, frames: int, latent_dim: int) -> jax.Array:
    """(rows * frames, latent_dim): each row walks linearly between two random latents."""
    start_key, end_key = jax.random.split(rng)
    start = sample_latent(start_key, rows, latent_dim)
    end = sample_latent(end_key, rows, latent_dim)
    t = jnp.linspace(0.0, 1.0, frames)[None, :, None]
    walk = start[:, None, :] * (1.0 - t) + end[:, None, :] * t
    return walk.reshape(rows * frames, latent_dim)


def write_samples(
    workdir: str,
    out: str,
    num: int = 64,
    seed: int = 0,
    interpolate: bool = False,
    frames: int = 10,
    step: int | None = None,
) -> np.ndarray:
    """Renders the grid (or walk) for a run and writes it to `out`; returns the uint8 grid."""
    run = load_run(workdir, step)
    rng = jax.random.key(seed)
    latent_dim = run.config.latent_dim
    classes = run.g_state.spec.num_classes
    labels = None
    if interpolate:
        z = interpolation_latents(rng, num, frames, latent_dim)
        ncols = frames
        if classes:
            labels = jnp.repeat(balanced_labels(num, classes), frames)
    elif classes:
        z, labels, ncols = class_grid_latents(rng, num, classes, latent_dim)
    else:
        z = sample_latent(rng, num, latent_dim)
        ncols = None
    pictures = np.asarray(jax.jit(generate_from_latent)(run.g_state, z, labels=labels))
    grid = images.make_grid(pictures, ncols=ncols)
    images.save_png(out, grid)
    return grid


def main(argv: list[str]) -> None:
    """Writes the grid (or walk) the flags describe (see `_define_flags`)."""
    cli.check_arguments(argv)
    cli.quiet_library_logs()
    f = flags.FLAGS
    cli.require_workdir(f.workdir)
    try:
        write_samples(f.workdir, f.out, f.num, f.seed, f.interpolate, f.frames, f.step)
    except GanJaxError as e:
        cli.fail(str(e))
    print(f"wrote {f.out}")


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
