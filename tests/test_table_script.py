"""The rows of scripts/fashion_mnist_table.sh are valid train.py switches.

A misspelt key or a value of the wrong type would only surface after the rows
before it had trained for an hour; this reads each row's switches with the same
ml_collections flag parser train.py uses and validates the resulting config.
"""

from __future__ import annotations

import pathlib
import re
import shlex

import pytest
from absl import flags
from ml_collections import config_flags

from gan_jax.trainer import validate_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "fashion_mnist_table.sh"
CONFIG = ROOT / "configs" / "fashion_mnist_table.py"


def _rows() -> dict[str, str]:
    text = SCRIPT.read_text()
    rows = dict(re.findall(r'^\s*\[(\w+)\]="([^"]*)"', text, flags=re.M))
    order = re.search(r"^order=\(([^)]*)\)", text, flags=re.M).group(1).split()
    assert sorted(order) == sorted(rows), "the script's order and its rows differ"
    return rows


ROWS = _rows()


def _config(switches: list[str]):
    argv = ["train.py", f"--config={CONFIG}", *switches]
    fv = flags.FlagValues()
    holder = config_flags.DEFINE_config_file(
        "config", str(CONFIG), flag_values=fv, lock_config=True, sys_argv=argv
    )
    fv(argv)
    return holder.value


@pytest.mark.parametrize("row", sorted(ROWS))
def test_table_row_switches_parse_and_validate(row):
    switches = shlex.split(ROWS[row])
    config = _config(switches)
    for switch in switches:
        key, _, value = switch.removeprefix("--config.").partition("=")
        assert str(config[key]) == value or float(config[key]) == float(value), switch
    validate_config(config)


def test_table_has_every_row_of_the_results_table():
    expected = {
        "baseline",
        "ema",
        "sn_hinge",
        "ttur",
        "lsgan",
        "conditional",
        "data10",
        "data10_diffaugment",
        "wgan_gp",
        "recipe",
    }
    assert set(ROWS) == expected


def test_a_misspelt_switch_is_refused():
    with pytest.raises(Exception, match="ema_decy"):
        _config(["--config.ema_decy=0.9"])


def _results_table():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "results_table", ROOT / "scripts" / "results_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_table_rows_from_histories(tmp_path, capsys):
    import json

    records = {
        "ema": [
            {"step": 1000, "fid": 80.0, "train_seconds": 200.0},
            {
                "step": 2000,
                "fid": 55.634,
                "kid_mean": 0.04012,
                "precision": 0.2168,
                "recall": 0.153,
                "density": 0.12604,
                "coverage": 0.1721,
                "num_images": 10000,
                "train_seconds": 451.9,
            },
        ],
        "late_collapse": [{"step": 1000, "fid": 40.0}, {"step": 2000, "fid": 90.0}],
    }
    runs = []
    for name, history in records.items():
        (tmp_path / name / "eval").mkdir(parents=True)
        lines = "".join(json.dumps(r) + "\n" for r in history)
        (tmp_path / name / "eval" / "history.jsonl").write_text(lines)
        runs.append(str(tmp_path / name))
    module = _results_table()
    assert module.main(runs) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == (
        "| ema | 2,000 | 55.63 | 0.0401 | 0.217 | 0.153 | 0.126 | 0.172 | 10,000 | 7.5 min |"
    )
    assert out[3] == "| late_collapse | 2,000 | 90.00 | - | - | - | - | - | - | - |"
    assert module.main([*runs, "--best"]) == 0
    assert capsys.readouterr().out.splitlines()[3].startswith("| late_collapse | 1,000 | 40.00 |")
    assert module.main([str(tmp_path / "missing")]) == 2
    assert "no evaluation history" in capsys.readouterr().err
