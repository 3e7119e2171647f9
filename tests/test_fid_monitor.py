"""FID during training (`config.eval_every_steps`): logged scores and the best-FID checkpoint."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from gan_jax import fid_monitor, rundir, trainer
from gan_jax.errors import ConfigError
from gan_jax.metrics.extractor import Activations


class ProjectionExtractor:
    """Stands in for the Inception network: features are a fixed random projection of pixels."""

    def __init__(self, weights_path=None, *, resize_mode="tf1", devices=None, **kwargs):
        self.resize_mode = resize_mode
        self.weights_id = "projection"
        self.calls = 0
        self._proj = None

    def extract(self, batches, num_images=None, progress=None):
        self.calls += 1
        images = np.concatenate(list(batches))[:num_images]
        if progress is not None:
            progress(0)
            progress(len(images))
        flat = images.reshape(len(images), -1).astype(np.float64)
        if self._proj is None:
            self._proj = np.random.default_rng(0).normal(size=(flat.shape[1], 8))
        feats = (flat @ self._proj).astype(np.float32)
        return Activations(feats, None, self.resize_mode, self.weights_id)


@pytest.fixture
def created(monkeypatch):
    """The stand-in extractors the trainer builds."""
    created = []

    def make(*args, **kwargs):
        created.append(ProjectionExtractor(*args, **kwargs))
        return created[-1]

    monkeypatch.setattr("gan_jax.metrics.extractor.InceptionExtractor", make)
    return created


@pytest.fixture
def eval_config(tiny_config, tmp_path, created):
    weights = tmp_path / "weights.msgpack"
    weights.write_bytes(b"not read: the extractor is replaced")
    tiny_config.inception_weights = str(weights)
    tiny_config.fid_stats_dir = str(tmp_path / "stats")
    tiny_config.eval_every_steps = 2
    tiny_config.eval_num_samples = 24
    tiny_config.eval_num_ref = 40
    tiny_config.num_train_steps = 6
    return tiny_config


def _history(workdir):
    with open(os.path.join(workdir, rundir.HISTORY)) as f:
        return [json.loads(line) for line in f]


def test_fid_is_logged_and_the_best_state_is_kept_across_a_resume(
    eval_config, created, tmp_path, capsys
):
    from gan_jax.rundir import load_run

    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(eval_config, workdir)
    progress = capsys.readouterr().err  # Not a terminal: plain lines.
    assert "Evaluation at step 2: reference statistics: 40/40 img (100%)" in progress
    assert "Evaluation at step 4: reference statistics" not in progress  # cached by then
    for step in (2, 4, 6):
        assert f"Evaluation at step {step}: generated images: 24/24 img (100%)" in progress
    history = _history(workdir)
    assert [h["step"] for h in history] == [2, 4, 6]
    assert all(math.isfinite(h["fid"]) and h["fid"] > 0 for h in history)
    assert len({h["fid"] for h in history}) == 3  # the generator changed between evaluations
    assert len(created) == 1 and created[0].calls == 4  # built once; reference extracted once
    assert all(h["num_images"] == 24 for h in history)
    assert all(0 <= h[name] <= 1 for h in history for name in ("precision", "recall", "coverage"))

    eval_config.num_train_steps = 10
    trainer.train_and_evaluate(eval_config, workdir)  # resumes at step 6
    history = _history(workdir)
    assert [h["step"] for h in history] == [2, 4, 6, 8, 10]
    # The training clock goes on from the checkpoint's value after the resume. (Records
    # round it to 0.1 s, which two steps of this tiny model may take less than.)
    seconds = [h["train_seconds"] for h in history]
    assert seconds == sorted(seconds) and seconds[0] > 0 and seconds[3] > seconds[2]
    best = min(history, key=lambda h: h["fid"])
    meta = rundir.read_best(workdir)
    assert meta["step"] == best["step"] and meta["fid"] == pytest.approx(best["fid"])
    assert os.listdir(os.path.join(workdir, rundir.BEST_CHECKPOINTS)) == [str(best["step"])]

    run = load_run(workdir, best=True)
    assert run.step == best["step"]
    # The stored state is the one that was scored: scoring it again gives the same FID.
    from gan_jax import evaluate

    again = evaluate.evaluate_generator(
        run.g_state,
        run.config,
        num_samples=24,
        num_ref=40,
        seed=eval_config.seed,
        extractor=ProjectionExtractor(),
        kid_features=40,
        stats_dir=eval_config.fid_stats_dir,
    )
    assert again["fid"] == pytest.approx(best["fid"], rel=1e-5)


def test_records_carry_train_seconds_and_plot(tiny_config, tmp_path, monkeypatch):
    from gan_jax import plot

    pytest.importorskip("matplotlib")
    workdir = str(tmp_path / "run")
    monitor = fid_monitor.FidMonitor(tiny_config, workdir, read_images=None)
    scores = iter([{"fid": 30.0, "precision": 0.5, "recall": 0.25}, {"fid": 20.0}])
    monkeypatch.setattr(monitor, "_score", lambda g_state, step: next(scores))
    try:
        first = monitor.evaluate(2, None, train_seconds=61.234)
        monitor.evaluate(4, None)  # a caller that does not time training
    finally:
        monitor.close()
    assert first["train_seconds"] == 61.2 and "eval_seconds" in first
    history = _history(workdir)
    assert [h["step"] for h in history] == [2, 4] and "train_seconds" not in history[1]
    assert fid_monitor.tensorboard_scalars(first) == {"fid": 30.0, "precision": 0.5, "recall": 0.25}
    fig = plot.plot_histories([workdir], str(tmp_path / "fid.png"))
    assert fig.axes[-1].get_xlabel() == "step" and len(fig.axes) == 2


def test_evaluation_without_weights_is_one_error_before_training(tiny_config, tmp_path):
    tiny_config.eval_every_steps = 2
    tiny_config.inception_weights = str(tmp_path / "missing.msgpack")
    with pytest.raises(ConfigError, match=r"eval_every_steps=2 needs the FID Inception weights.*"):
        trainer.train_and_evaluate(tiny_config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("eval_every_steps", 3, "multiple of steps_per_dispatch"),
        ("eval_num_samples", 1, "at least 2"),
        ("eval_resize", "nearest", "nearest"),
    ],
)
def test_bad_evaluation_settings_are_refused(eval_config, field, value, message, tmp_path):
    eval_config.steps_per_dispatch = 2
    eval_config[field] = value
    with pytest.raises(ConfigError, match=message):
        trainer.validate_config(eval_config)


def test_best_requires_a_run_that_evaluated(tiny_config, tmp_path):
    from gan_jax.errors import CheckpointError
    from gan_jax.rundir import load_run

    workdir = str(tmp_path / "run")
    tiny_config.num_train_steps = 2
    trainer.train_and_evaluate(tiny_config, workdir)
    with pytest.raises(CheckpointError, match="eval_every_steps"):
        load_run(workdir, best=True)


@pytest.mark.parametrize(
    "split, eval_split, expected",
    [("train[:10%]", None, "train[:10%]"), ("train[:10%]", "train", "train")],
)
def test_reference_images_come_from_eval_split(eval_config, tmp_path, split, eval_split, expected):
    """A run on a slice of the data is scored against the real images `eval_split` names."""
    import jax

    from gan_jax import create_train_states

    eval_config.split = split
    eval_config.eval_split = eval_split
    asked = []

    def read_images(config, split, num_examples):
        asked.append((split, num_examples))
        rng = np.random.default_rng(0)
        shape = (num_examples, config.image_size, config.image_size, config.channels)
        yield rng.uniform(-1, 1, shape).astype(np.float32)

    g_state, _ = create_train_states(eval_config, jax.random.key(0))
    monitor = fid_monitor.FidMonitor(eval_config, str(tmp_path / "run"), read_images=read_images)
    try:
        result = monitor.evaluate(2, g_state)
    finally:
        monitor.close()
    assert asked == [(expected, eval_config.eval_num_ref)]
    assert result["reference"]["split"] == expected
