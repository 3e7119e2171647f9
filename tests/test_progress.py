"""Progress of long jobs: live bars on a terminal, a few plain lines in a log file."""

from __future__ import annotations

import io
import re

import jax
import numpy as np

from gan_jax.metrics.extractor import InceptionExtractor
from gan_jax.progress import Progress, training_meter


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _clock(monkeypatch, start: float = 1000.0):
    """A fake clock for tqdm: returns a function that moves it forward."""
    import tqdm.std

    now = [start]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    return advance


def test_a_log_file_gets_a_line_every_interval_and_no_carriage_returns(monkeypatch):
    advance = _clock(monkeypatch)
    log = io.StringIO()
    with Progress("Features", total=1000, stream=log, log_every=30) as bar:
        bar.update(0)
        for _ in range(100):  # 10 images every 3 s: 300 s in all.
            advance(3)
            bar.update(10)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # The start, one line per 30 s, and the end (which the last interval's line already is).
    assert 10 <= len(lines) <= 12, lines
    assert lines[0].startswith("Features: 0/1000 img (0%)")
    assert lines[-1].startswith("Features: 1000/1000 img (100%), 05:00 elapsed, ETA 00:00")
    assert "3.33img/s" in lines[-1]
    middle = lines[len(lines) // 2]
    done = int(re.match(r"Features: (\d+)/1000", middle).group(1))
    eta = re.search(r"ETA (\d\d):(\d\d)", middle)
    assert abs(int(eta.group(1)) * 60 + int(eta.group(2)) - (1000 - done) * 0.3) <= 2


def test_a_terminal_gets_a_redrawn_bar():
    screen = _Terminal()
    with Progress("Features", total=8, stream=screen) as bar:
        for _ in range(4):
            bar.update(2)
    text = screen.getvalue()
    assert text.count("\r") >= 2 and text.endswith("\n")
    assert "8/8" in text.rsplit("\r", 1)[-1]


def test_a_bar_appears_only_once_updated_and_takes_a_late_total():
    log = io.StringIO()
    unused = Progress("Reference statistics", stream=log)
    unused.close()
    assert log.getvalue() == "" and not unused.started
    with Progress("Reference statistics", stream=log) as bar:
        bar.total = 5
        bar(0)
        bar(5)
    assert bar.started and bar.n == 5
    assert log.getvalue().splitlines()[-1].startswith("Reference statistics: 5/5 img (100%)")


def test_training_meter_shows_elapsed_time_and_eta():
    line = training_meter(1500, 2000, elapsed=95.0, steps_per_second=10.0)
    assert line.startswith("step 1500/2000 [")
    assert " 75% 01:35<00:50" in line
    assert training_meter(2000, 2000, 95.0, None).endswith("100% 01:35<00:00")


def test_extract_reports_every_finished_batch(monkeypatch):
    # The real extraction loop with a stand-in for the compiled network: features are
    # the first pixels, so that no Inception weights are needed.
    extractor = object.__new__(InceptionExtractor)
    extractor.batch_size, extractor.with_logits = 4, False
    extractor.resize_mode, extractor.weights_id = "tf1", "pixels"
    extractor._variables, extractor._data_sharding = None, jax.devices()[0]

    def forward(params, images):
        return images.reshape(images.shape[0], -1)[:, :2], None

    extractor._forward = forward
    calls: list[int] = []
    batches = [np.zeros((3, 2, 2, 1), np.float32) for _ in range(4)]  # 12 images, batches of 4.
    acts = extractor.extract(iter(batches), num_images=10, progress=calls.append)
    assert acts.features.shape == (10, 2)
    assert calls == [0, 4, 4, 2]  # 0 first: the bar shows while the first batch compiles.


def test_extractors_without_a_progress_argument_still_work():
    import types

    from gan_jax import metrics

    def extract(batches, num_images=None):  # a caller's own extractor, as in the docs
        x = np.concatenate(list(batches))[:num_images]
        return metrics.Activations(x.reshape(len(x), -1), None, "tf1", "pixels")

    extractor = types.SimpleNamespace(extract=extract, resize_mode="tf1", weights_id="pixels")
    images = np.random.default_rng(0).uniform(-1, 1, (8, 2, 2, 1))
    calls: list[int] = []
    ref = metrics.reference_stats([images], None, {}, extractor, progress=calls.append)
    assert ref.num_images == 8 and calls == []
