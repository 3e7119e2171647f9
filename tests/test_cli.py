"""Command-line conventions: `--help` exits 0 with the command's own flags; no library noise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gan_jax import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_all(commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess]:
    """Runs the commands at the same time (each one starts an interpreter and imports jax)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": REPO}
    started = {
        name: subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    done = {}
    for name, proc in started.items():
        out, err = proc.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def test_help_exits_0_and_lists_each_commands_own_flags():
    results = _run_all(
        {
            "train": ["train.py", "--help"],
            "evaluate": ["-m", "gan_jax.evaluate", "--help"],
            "sample": ["-m", "gan_jax.sample", "-?"],
        }
    )
    own = {
        "train": ["--config:", "--workdir:", "--coordinator_address:"],
        "evaluate": ["--workdir:", "--num_samples:", "--num_ref:", "--[no]best:"],
        "sample": ["--workdir:", "--out:", "--[no]interpolate:"],
    }
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr[-2000:])
        for flag in own[name]:
            assert flag in result.stdout, (name, flag, result.stdout)
        assert "--verbosity:" not in result.stdout, "absl's flags belong to --helpfull"
        assert "--helpfull" in result.stdout
    assert "python -m gan_jax.evaluate --workdir DIR" in results["evaluate"].stdout


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["x", "--help"], "short"),
        (["x", "-help"], "short"),
        (["x", "--helpshort"], "short"),
        (["x", "--workdir=w", "-?"], "short"),
        (["x", "--helpfull"], "full"),
        (["x", "--workdir=--help"], None),
        (["x", "--", "--help"], None),
        (["x", "--config.help=1"], None),
    ],
)
def test_help_requests_are_recognised(argv, expected):
    assert cli.help_requested(argv) == expected


def test_library_chatter_stays_off_the_console():
    # TensorFlow's C++ start-up notes and tfds's deprecation warning, as the command
    # lines see them once they have quieted the libraries.
    code = (
        "import importlib.util\n"
        "from gan_jax import cli\n"
        "cli.quiet_library_logs()\n"
        "assert importlib.util.find_spec('tensorflow')  # a look-up first, as libraries do\n"
        "import tensorflow_datasets as tfds\n"
        "tfds.features.Image(shape=(4, 4, 1)).dtype  # logs a deprecation warning\n"
        "import sys; print('done', file=sys.stderr)\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": REPO}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == "done\n"
