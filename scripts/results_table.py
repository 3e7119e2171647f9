"""Markdown rows of the scores of training runs, for docs/RESULTS.md.

Reads each run's evaluation history (`gan_jax.plot.read_history`) and prints one
table row per run: its last evaluation (or, with --best, its lowest FID) with
FID, KID, precision, recall, density, coverage, the number of generated images and
the training minutes of that record.

  python scripts/results_table.py runs/table/* [--best]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gan_jax.plot import read_history  # noqa: E402

HEADER = (
    "| run | step | FID | KID | precision | recall | density | coverage | images | training |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _number(record: dict[str, Any], key: str, digits: int) -> str:
    value = record.get(key)
    return "-" if value is None else f"{float(value):.{digits}f}"


def row(name: str, record: dict[str, Any]) -> str:
    """One markdown row of an evaluation record."""
    seconds = record.get("train_seconds")
    minutes = "-" if seconds is None else f"{seconds / 60:.1f} min"
    cells = [
        name,
        f"{int(record['step']):,}",
        _number(record, "fid", 2),
        _number(record, "kid_mean", 4),
        *(_number(record, key, 3) for key in ("precision", "recall", "density", "coverage")),
        f"{int(record['num_images']):,}" if "num_images" in record else "-",
        minutes,
    ]
    return "| " + " | ".join(cells) + " |"


def table(runs: Sequence[str], best: bool = False) -> str:
    """The header and one row per run (named by its directory)."""
    lines = [HEADER]
    for run in runs:
        history = read_history(run)
        record = min(history, key=lambda r: r["fid"]) if best else history[-1]
        lines.append(row(os.path.basename(os.path.normpath(run)), record))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--best", action="store_true", help="each run's lowest-FID record")
    args = p.parse_args(argv)
    try:
        print(table(args.runs, args.best))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
