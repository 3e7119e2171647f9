"""Cheap answers first: a finished run's rerun and bad input, before any slow set-up."""

from __future__ import annotations

import os

import jax
import pytest
from absl import flags

from gan_jax import cli, create_train_states, input_pipeline, save_checkpoint, trainer
from gan_jax.errors import ConfigError, GanJaxError
from gan_jax.preflight import check_workdir


def _forbid_slow_set_up(monkeypatch) -> None:
    """Data, states and the input pipeline fail if built: the answer must come before."""

    def slow(*args, **kwargs):
        raise AssertionError("the slow set-up ran")

    monkeypatch.setattr(trainer, "create_train_states", slow)
    monkeypatch.setattr(input_pipeline, "validate", slow)
    monkeypatch.setattr(input_pipeline, "create_input_iter", slow)


def test_a_finished_runs_rerun_reads_only_the_checkpoint_metadata(
    tiny_config, tmp_path, monkeypatch, capsys
):
    g_state, d_state = create_train_states(tiny_config, jax.random.key(0))
    workdir = tmp_path / "run"
    steps = tiny_config.num_train_steps
    save_checkpoint(workdir / "checkpoints", g_state, d_state, step=steps, config=tiny_config)
    _forbid_slow_set_up(monkeypatch)

    summary = trainer.train_and_evaluate(tiny_config, str(workdir))
    assert summary == {"status": "already_finished", "step": steps, "metrics": {}}
    out = capsys.readouterr().out
    assert f"already reached step {steps}; checkpoints in {workdir}/checkpoints" in out

    other = tiny_config.copy_and_resolve_references()
    other.g_width = 16  # A different architecture is still refused, also without training.
    with pytest.raises(GanJaxError, match="different architecture"):
        trainer.train_and_evaluate(other, str(workdir))


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("batch_size", 0, "batch_size=0 must be positive"),
        ("dataset", "folder:/no/such/images", "image folder /no/such/images does not exist"),
    ],
)
def test_bad_config_is_refused_before_anything_is_built_or_written(
    tiny_config, tmp_path, monkeypatch, field, value, expected
):
    tiny_config[field] = value
    _forbid_slow_set_up(monkeypatch)
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=expected):
        trainer.train_and_evaluate(tiny_config, str(workdir))
    assert not workdir.exists()


def test_an_unknown_dataset_leaves_no_directory_behind(tiny_config, tmp_path, monkeypatch):
    tiny_config.dataset = "no_such_dataset_anywhere"
    monkeypatch.setattr(trainer, "create_train_states", None)  # Never reached.
    workdir = tmp_path / "run"
    with pytest.raises(GanJaxError, match="unknown dataset"):
        trainer.train_and_evaluate(tiny_config, str(workdir))
    assert not workdir.exists()


def test_an_unwritable_workdir_is_refused_before_the_data_is_read(
    tiny_config, tmp_path, monkeypatch
):
    (tmp_path / "a_file").write_text("")
    _forbid_slow_set_up(monkeypatch)
    with pytest.raises(ConfigError, match="is not writable .*a_file is a file"):
        trainer.train_and_evaluate(tiny_config, str(tmp_path / "a_file" / "run"))
    assert check_workdir(str(tmp_path / "new" / "run")) == str(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="read-only"):
            check_workdir(str(locked / "run"))


def test_a_mistyped_config_field_is_named_with_the_suggestion():
    # What ml_collections raises for `--config.bach_size=64`.
    raised = AttributeError(
        KeyError('\'bach_size\'\nDid you mean "batch_size" instead of "bach_size"?')
    )
    message = cli.flag_error(raised, ["train.py", "--config.bach_size=64"])
    assert message == (
        "unknown config field 'bach_size' in --config.bach_size=64; did you mean "
        '"batch_size" instead of "bach_size"? (docs/config.md lists the fields).'
    )
    unknown = flags.UnrecognizedFlagError("config.foo")
    assert cli.flag_error(unknown, ["train.py", "--config.foo=1"]).startswith(
        "unknown config field 'foo' in --config.foo=1 "
    )


CPUINFO = """processor\t: 0
model name\t: Some Xeon
flags\t\t: fpu sse2 avx2 avx512f {extra}
processor\t: 1
"""


@pytest.mark.parametrize(
    ("extra", "warns", "phrase"),
    [
        ("avx512_bf16 amx_bf16 amx_tile", False, ""),
        ("avx512_bf16", True, "~0.85x"),
        ("", True, "emulated"),
    ],
)
def test_bfloat16_on_a_cpu_without_amx_is_flagged_as_slow(extra, warns, phrase):
    from gan_jax.preflight import cpu_flags, slow_bfloat16_warning

    flags_ = cpu_flags(CPUINFO.format(extra=extra))
    assert "avx2" in flags_ and ("amx_bf16" in flags_) == (not warns)
    message = slow_bfloat16_warning("bfloat16", "cpu", flags_)
    assert (message is not None) == warns
    if warns:
        assert phrase in message and "--config.dtype=float32" in message
    # float32, accelerators and machines whose flags cannot be read never warn.
    assert slow_bfloat16_warning("float32", "cpu", flags_) is None
    assert slow_bfloat16_warning("bfloat16", "gpu", flags_) is None
    assert cpu_flags("no flags line here") is None
