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
