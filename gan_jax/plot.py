"""FID curves of training runs: `python -m gan_jax.plot RUN_DIR [RUN_DIR ...] --out fid.png`.

Reads each run's evaluation history (`HISTORY`: one JSON record per periodic evaluation,
with `step` and `fid`, and optionally `train_seconds`, `precision`, `recall`, ...) and
draws FID against training minutes when every record of every run has `train_seconds`,
against step otherwise (`--x` chooses), one line per run with its best FID marked. When
the records have precision and recall, a second panel shows them (precision solid,
recall dashed). Needs matplotlib (`pip install 'gan_jax[plot]'`); draws with Agg and no
pyplot, so it never opens a window or changes a notebook's backend.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from gan_jax.rundir import HISTORY

X_AXES = ("auto", "minutes", "step")


def history_path(run: str) -> str:
    """The history file of `run`: a run directory, or the history file itself."""
    return run if os.path.isfile(run) else os.path.join(run, HISTORY)


def read_history(run: str) -> list[dict[str, Any]]:
    """The evaluation records of `run` sorted by step; the last record of a repeated step wins.

    A resumed run evaluates again the steps after its checkpoint, hence the repeats. A
    truncated last line (a run stopped while writing) is ignored; other bad lines raise.

    Example:
      >>> import json, os
      >>> os.makedirs("run/eval")
      >>> with open("run/eval/history.jsonl", "w") as f:
      ...     for step, fid in [(200, 40.0), (100, 80.0), (200, 35.0)]:
      ...         _ = f.write(json.dumps({"step": step, "fid": fid}) + "\\n")
      >>> [(r["step"], r["fid"]) for r in read_history("run")]
      [(100, 80.0), (200, 35.0)]
    """
    path = history_path(run)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"no evaluation history at {path}; it is written by runs trained with "
            "--config.eval_every_steps=N (pass the run directory or the history file)."
        )
    with open(path) as f:
        lines = f.read().split("\n")
    by_step: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # No newline after it: cut off mid-write.
                continue
            raise ValueError(f"{path}:{number} is not a JSON record; remove the line.") from None
        if not isinstance(record, dict) or "step" not in record or "fid" not in record:
            raise ValueError(f"{path}:{number} has no `step` and `fid`; remove the line.")
        by_step[int(record["step"])] = record
    if not by_step:
        raise ValueError(f"{path} has no evaluation records yet.")
    return [by_step[step] for step in sorted(by_step)]


def _labels(runs: Sequence[str], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(runs):
            raise ValueError(f"got {len(labels)} labels for {len(runs)} runs; give one per run.")
        return list(labels)

    def name(run: str) -> str:
        run = os.path.normpath(run)
        if os.path.isfile(run) and run.endswith(os.path.normpath(HISTORY)):
            run = os.path.dirname(os.path.dirname(run))
        return os.path.basename(os.path.abspath(run))

    names = [name(run) for run in runs]
    return names if len(set(names)) == len(names) else [os.path.normpath(r) for r in runs]


def _number(record: dict[str, Any], key: str) -> float:
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) else math.nan


def plot_histories(
    runs: Sequence[str],
    out: str,
    labels: Sequence[str] | None = None,
    log_y: bool = False,
    x: str = "auto",
    title: str | None = None,
) -> Any:
    """Plots the FID (and precision/recall) histories of `runs` to the image file `out`.

    Args:
      runs: run directories (or their history files).
      out: image file; the extension picks the format (.png, .pdf, .svg).
      labels: one legend label per run (default: the directory names).
      log_y: FID on a log scale.
      x: "minutes" (training time, needs `train_seconds` in every record), "step", or
        "auto": minutes when every record has it, otherwise step.
      title: figure title.

    Returns the matplotlib Figure (already saved).
    """
    if x not in X_AXES:
        raise ValueError(f"x={x!r} is not one of {X_AXES}.")
    histories = [read_history(run) for run in runs]
    names = _labels(runs, labels)
    timed = [all(math.isfinite(_number(r, "train_seconds")) for r in h) for h in histories]
    if x == "minutes" and not all(timed):
        missing = [run for run, ok in zip(runs, timed, strict=True) if not ok]
        raise ValueError(
            f"no train_seconds in the history of {', '.join(missing)}; plot with --x step."
        )
    minutes = x == "minutes" or (x == "auto" and all(timed))
    with_pr = any("precision" in r or "recall" in r for h in histories for r in h)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.ticker import LogFormatter
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'gan_jax[plot]'.") from None

    fig = Figure(figsize=(7.0, 6.5 if with_pr else 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True) if with_pr else [fig.subplots()]
    fid_ax = axes[0]
    for i, (history, name) in enumerate(zip(histories, names, strict=True)):
        color = f"C{i % 10}"
        xs = [r["train_seconds"] / 60 if minutes else r["step"] for r in history]
        fids = [_number(r, "fid") for r in history]
        finite = [j for j, v in enumerate(fids) if math.isfinite(v)]
        label = name
        if finite:
            best = min(finite, key=lambda j: fids[j])
            label = f"{name} (best {fids[best]:.3g} at step {history[best]['step']})"
            fid_ax.plot(xs[best], fids[best], "*", color=color, markersize=13, zorder=3)
        fid_ax.plot(xs, fids, "-o", color=color, markersize=3, label=label)
        if with_pr:
            axes[1].plot(xs, [_number(r, "precision") for r in history], "-", color=color)
            axes[1].plot(xs, [_number(r, "recall") for r in history], "--", color=color)
    fid_ax.set_ylabel("FID")
    if log_y:
        fid_ax.set_yscale("log")
        fid_ax.yaxis.set_major_formatter(LogFormatter())  # 40, not 4 x 10^1
        fid_ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    fid_ax.grid(True, which="both", alpha=0.3)
    fid_ax.legend(fontsize="small")
    if with_pr:
        pr_ax = axes[1]
        pr_ax.set_ylabel("precision / recall")
        pr_ax.set_ylim(0.0, 1.02)
        pr_ax.grid(True, alpha=0.3)
        styles = [Line2D([], [], color="k", ls=ls) for ls in ("-", "--")]
        pr_ax.legend(styles, ["precision", "recall"], fontsize="small")
    axes[-1].set_xlabel("training minutes" if minutes else "step")
    if title:
        fig.suptitle(title)
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out, dpi=120)
    return fig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gan_jax.plot",
        description="FID (and precision/recall) of training runs over time, from each run's "
        f"{HISTORY}.",
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run directories (or their history files)"
    )
    parser.add_argument("--out", default="fid.png", help="image file (default: fid.png)")
    parser.add_argument("--labels", nargs="+", help="one legend label per run")
    parser.add_argument("--log_y", action="store_true", help="FID on a log scale")
    parser.add_argument(
        "--x",
        choices=X_AXES,
        default="auto",
        help="x axis: training minutes, step, or auto (minutes when recorded)",
    )
    parser.add_argument("--title", help="figure title")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (2 with one line on stderr for bad input)."""
    args = _parser().parse_args(argv)
    try:
        fig = plot_histories(args.runs, args.out, args.labels, args.log_y, args.x, args.title)
    except (OSError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(args.runs)} runs; x: {fig.axes[-1].get_xlabel()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
