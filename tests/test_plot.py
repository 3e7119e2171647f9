"""The FID plot of run histories: both record formats, the PNG, and the command line."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys

import numpy as np
import pytest

from gan_jax import plot

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


def _write_history(run_dir, records, tail: str = "") -> None:
    (run_dir / "eval").mkdir(parents=True)
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (run_dir / "eval" / "history.jsonl").write_text(lines + tail)


def _full_run(tmp_path, name="full"):
    """Records as the monitor will write them: train time and precision/recall included."""
    records = [
        {
            "step": s,
            "fid": 100.0 / (1 + s / 500),
            "kid_mean": 0.05,
            "train_seconds": 30.0 * s / 100,
            "precision": 0.5 + s / 4000,
            "recall": 0.2 + s / 5000,
            "density": 0.8,
            "coverage": 0.6,
        }
        for s in range(100, 1100, 100)
    ]
    _write_history(tmp_path / name, records)
    return tmp_path / name


def _plain_run(tmp_path, name="plain"):
    """Records as the monitor writes them today: step, FID, KID, no time."""
    fids = [90.0, 60.0, 45.0, float("nan"), 50.0]
    records = [{"step": 250 * (i + 1), "fid": f, "kid_mean": 0.03} for i, f in enumerate(fids)]
    _write_history(tmp_path / name, records)
    return tmp_path / name


def _check_png(path) -> None:
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        image.load()
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert image.format == "PNG" and min(image.size) > 300
    assert pixels.std() > 10  # lines and text, not a blank canvas


def test_two_runs_of_both_formats(tmp_path):
    full, plain = _full_run(tmp_path), _plain_run(tmp_path)
    out = tmp_path / "plots" / "fid.png"
    fig = plot.plot_histories([str(full), str(plain)], str(out), log_y=True)
    _check_png(out)
    fid_ax, pr_ax = fig.axes[:2]
    assert fid_ax.get_yscale() == "log"
    assert pr_ax.get_xlabel() == "step"  # the plain run has no train_seconds
    legend = [t.get_text() for t in fid_ax.get_legend().get_texts()]
    assert legend == ["full (best 33.3 at step 1000)", "plain (best 45 at step 750)"]
    assert len(pr_ax.get_lines()) == 4  # precision and recall of each run
    best_marker = fid_ax.get_lines()[2]  # the plain run's star, then its curve
    assert list(best_marker.get_xdata()) == [750] and list(best_marker.get_ydata()) == [45.0]


def test_training_minutes_when_recorded(tmp_path):
    fig = plot.plot_histories([str(_full_run(tmp_path))], str(tmp_path / "fid.png"))
    curve = fig.axes[0].get_lines()[1]
    assert fig.axes[-1].get_xlabel() == "training minutes"
    np.testing.assert_allclose(curve.get_xdata(), [0.5 * s / 100 for s in range(100, 1100, 100)])
    fig = plot.plot_histories([str(_full_run(tmp_path, "b"))], str(tmp_path / "s.png"), x="step")
    assert fig.axes[-1].get_xlabel() == "step"


def test_a_history_without_optional_fields(tmp_path):
    out = tmp_path / "fid.png"
    fig = plot.plot_histories([str(_plain_run(tmp_path))], str(out), labels=["baseline"])
    _check_png(out)
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "step"
    assert fig.axes[0].get_legend().get_texts()[0].get_text().startswith("baseline ")
    with pytest.raises(ValueError, match=r"no train_seconds in the history of .*plain"):
        plot.plot_histories([str(tmp_path / "plain")], str(out), x="minutes")
    _write_history(tmp_path / "null", [{"step": 1, "fid": 9.0, "train_seconds": None}])
    assert plot.plot_histories([str(tmp_path / "null")], str(out)).axes[0].get_xlabel() == "step"


def test_repeated_steps_and_a_truncated_last_line(tmp_path):
    records = [{"step": 100, "fid": 50.0}, {"step": 200, "fid": 40.0}, {"step": 200, "fid": 30.0}]
    _write_history(tmp_path / "run", records, tail='{"step": 300, "fi')
    history = plot.read_history(str(tmp_path / "run"))
    assert [(r["step"], r["fid"]) for r in history] == [(100, 50.0), (200, 30.0)]
    # The history file itself works as well as its run directory.
    assert plot.read_history(str(tmp_path / "run" / "eval" / "history.jsonl")) == history


def test_bad_histories_name_the_file(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"nowhere/eval/history\.jsonl.*eval_every_steps"):
        plot.plot_histories([str(_plain_run(tmp_path)), str(missing)], str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()
    _write_history(tmp_path / "bad", [{"step": 1, "fid": 2.0}], tail="oops\n")
    with pytest.raises(ValueError, match=r"bad/eval/history\.jsonl:2 is not a JSON record"):
        plot.read_history(str(tmp_path / "bad"))
    _write_history(tmp_path / "nofid", [{"step": 1}])
    with pytest.raises(ValueError, match=r"history\.jsonl:1 has no `step` and `fid`"):
        plot.read_history(str(tmp_path / "nofid"))
    _write_history(tmp_path / "empty", [])
    with pytest.raises(ValueError, match=r"empty/eval/history\.jsonl has no evaluation records"):
        plot.read_history(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="got 1 labels for 2 runs"):
        plot.plot_histories([str(tmp_path / "plain")] * 2, str(tmp_path / "x.png"), labels=["a"])


def test_command_line(tmp_path, capsys):
    full, plain = _full_run(tmp_path), _plain_run(tmp_path)
    out = tmp_path / "cli.png"
    assert plot.main([str(full), str(plain), "--out", str(out), "--labels", "a", "b"]) == 0
    _check_png(out)
    assert f"wrote {out}" in capsys.readouterr().out
    assert plot.main([str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no evaluation history at ") and err.count("\n") == 1
    assert "missing/eval/history.jsonl" in err


def test_help_exits_zero():
    result = subprocess.run(
        [sys.executable, "-m", "gan_jax.plot", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "RUN_DIR" in result.stdout and "--log_y" in result.stdout


def test_docstring_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(plot, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
