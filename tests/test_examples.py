"""The example scripts run end to end (a few steps, set by GAN_JAX_EXAMPLE_STEPS)."""

from __future__ import annotations

import pathlib
import runpy

import numpy as np
from PIL import Image

import gan_jax

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def test_custom_loop_is_short():
    lines = (EXAMPLES / "custom_loop.py").read_text().splitlines()
    assert len(lines) <= 30, f"examples/custom_loop.py has {len(lines)} lines; keep it to 30."


def test_custom_loop_trains_saves_and_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_JAX_EXAMPLE_STEPS", "3")
    monkeypatch.setenv("GAN_JAX_EXAMPLE_WORKDIR", str(tmp_path))
    namespace = runpy.run_path(str(EXAMPLES / "custom_loop.py"), run_name="__main__")

    assert int(namespace["g_state"].step) == 3
    assert all(np.isfinite(float(v)) for v in namespace["metrics"].values())
    grid = np.asarray(Image.open(tmp_path / "ema_samples.png"))
    assert grid.shape == (8 * 16 + 7 * 2, 8 * 16 + 7 * 2)
    assert grid.std() > 0, "the EMA generator produced a blank grid"
    g_state, _ = gan_jax.restore_checkpoint(tmp_path / "checkpoints", namespace["config"])
    assert int(g_state.step) == 3
