"""`python -m gan_jax.sample`: deterministic grids and latent walks from a workdir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiny_gan
from PIL import Image

from gan_jax import trainer
from gan_jax.errors import GanJaxError
from gan_jax.sample import interpolation_latents, write_samples


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    config = tiny_gan.config(
        num_train_steps=2, log_every_steps=1, sample_every_steps=0, checkpoint_every_steps=2
    )
    path = str(tmp_path_factory.mktemp("run"))
    assert trainer.train_and_evaluate(config, path)["status"] == "finished"
    return path


def test_same_checkpoint_and_flags_give_the_same_bytes(workdir, tmp_path):
    a, b, c = (str(tmp_path / f"{n}.png") for n in "abc")
    write_samples(workdir, a, num=9)
    write_samples(workdir, b, num=9)
    write_samples(workdir, c, num=9, seed=1)
    data = {p: Path(p).read_bytes() for p in (a, b, c)}
    assert data[a] == data[b]
    assert data[a] != data[c]
    assert Image.open(a).size == (3 * 16 + 2 * 2, 3 * 16 + 2 * 2)


def test_a_save_checkpoint_directory_reads_like_a_workdir(tmp_path):
    import jax

    from gan_jax import create_train_states, default_config, save_checkpoint

    config = default_config()
    config.update(dict(image_size=16, channels=1, g_width=8, d_width=8, latent_dim=16))
    g_state, d_state = create_train_states(config, jax.random.key(0))
    save_checkpoint(tmp_path / "run" / "checkpoints", g_state, d_state, step=3, config=config)
    save_checkpoint(tmp_path / "bare", g_state, d_state, step=3)  # no config stored
    # The run directory, and the directory given to save_checkpoint itself.
    for workdir in (tmp_path / "run", tmp_path / "run" / "checkpoints"):
        grid = write_samples(str(workdir), str(tmp_path / "grid.png"), num=4)
        assert grid.shape == (2 * 16 + 2, 2 * 16 + 2, 1)
    with pytest.raises(GanJaxError, match="its checkpoints hold no config"):
        write_samples(str(tmp_path / "bare"), str(tmp_path / "grid.png"))


def test_interpolation_rows_walk_between_two_latents():
    import jax

    z = np.asarray(interpolation_latents(jax.random.key(0), rows=2, frames=5, latent_dim=3))
    walk = z.reshape(2, 5, 3)
    steps = np.diff(walk, axis=1)
    np.testing.assert_allclose(steps, np.repeat(steps[:, :1], 4, axis=1), atol=1e-6)


def test_cli_writes_a_walk_and_reports_a_bad_workdir(workdir, tmp_path):
    out = str(tmp_path / "walk.png")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gan_jax.sample",
            f"--workdir={workdir}",
            f"--out={out}",
            "--num=2",
            "--interpolate",
            "--frames=4",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert Image.open(out).size == (4 * 16 + 3 * 2, 2 * 16 + 2)
    bad = subprocess.run(
        [sys.executable, "-m", "gan_jax.sample", f"--workdir={tmp_path}/nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert bad.returncode == 2 and "not a training workdir" in bad.stderr
