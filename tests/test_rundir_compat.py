"""Runs written by earlier versions keep loading: tests/golden/run_v1 is a tiny trainer run
(EMA on, FID every 4 steps) in the first run-directory format; see tests/golden/make_run_v1.py."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import sys

import jax
import numpy as np
import pytest

import gan_jax
from gan_jax import rundir

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
IMAGE_SEED, NUM_IMAGES = 1, 8  # As in make_run_v1.py.


@pytest.fixture
def run_v1(tmp_path):
    """A copy of the fixture (readers may not write there, but the trainer does)."""
    path = str(tmp_path / "run_v1")
    shutil.copytree(os.path.join(GOLDEN, "run_v1"), path)
    return path


def _expected_images():
    return np.load(os.path.join(GOLDEN, "run_v1_images.npy"))


def _images(g_state):
    return np.asarray(gan_jax.generate(g_state, jax.random.key(IMAGE_SEED), NUM_IMAGES))


def test_load_run_restores_the_state_and_its_ema(run_v1):
    run = gan_jax.load_run(run_v1)
    assert run.step == 8 and int(run.d_state.step) == 8 and run.config.latent_dim == 16
    assert run.g_state.ema_params is not None
    np.testing.assert_allclose(_images(run.g_state), _expected_images(), rtol=1e-5, atol=1e-6)
    # The expected images are the EMA's: the raw parameters give others.
    z = gan_jax.sample_latent(jax.random.key(IMAGE_SEED), NUM_IMAGES, 16)
    raw = np.asarray(gan_jax.generate_from_latent(run.g_state, z, use_ema=False))
    assert np.abs(raw - _expected_images()).max() > 1e-5  # 10x the tolerance above


def test_load_run_best_restores_the_best_fid_checkpoint(run_v1):
    with open(os.path.join(run_v1, "eval", "history.jsonl")) as f:
        history = [json.loads(line) for line in f]
    assert [h["step"] for h in history] == [4, 8]
    best = gan_jax.load_run(run_v1, best=True)
    assert best.step == min(history, key=lambda h: h["fid"])["step"] == 8
    np.testing.assert_allclose(_images(best.g_state), _expected_images(), rtol=1e-5, atol=1e-6)


def test_restore_checkpoint_reads_the_workdir_and_its_checkpoint_folder(run_v1):
    config = gan_jax.load_config(run_v1)
    for where in (run_v1, os.path.join(run_v1, "checkpoints")):
        g_state, d_state = gan_jax.restore_checkpoint(where, config)
        assert int(d_state.step) == 8
        np.testing.assert_allclose(_images(g_state), _expected_images(), rtol=1e-5, atol=1e-6)


def test_read_metrics_reads_the_logged_scalars(run_v1):
    metrics = gan_jax.read_metrics(run_v1)
    np.testing.assert_array_equal(metrics["d_loss"][0], [2, 4, 6, 8])
    np.testing.assert_array_equal(metrics["fid"][0], [4, 8])
    assert np.all(np.isfinite(metrics["g_loss"][1]))


def test_the_trainer_resumes_the_run(run_v1):
    config = gan_jax.load_config(run_v1)
    config.update(
        dict(num_train_steps=10, eval_every_steps=0, inception_weights=None, fid_stats_dir=None)
    )
    with contextlib.redirect_stdout(io.StringIO()) as log:
        summary = gan_jax.train_and_evaluate(config, run_v1)
    assert "Resumed from the checkpoint of step 8" in log.getvalue()
    assert summary["status"] == "finished" and summary["step"] == 10
    run = gan_jax.load_run(run_v1)
    assert run.step == 10 and run.g_state.ema_params is not None
    assert np.abs(_images(run.g_state) - _expected_images()).max() > 1e-5  # it trained on


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("gan_jax.api", ("save_checkpoint", "restore_checkpoint", "read_metrics")),
        ("gan_jax.runs", ("Run", "load_run", "load_config")),
    ],
)
def test_the_old_module_names_still_work_with_a_deprecation_warning(module, names, monkeypatch):
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"{module} is deprecated.*gan_jax"):
        old = importlib.import_module(module)
    for name in names:
        assert getattr(old, name) is getattr(rundir, name)
