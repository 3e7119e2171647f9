"""The trainer in-process: exact resume, unusable checkpoints, a full disk, NaN/inf.

One 16-step reference run (checkpoints every 4 steps, the newest 3 kept) is shared
by the module; the other runs resume from copies of it or are compared with it.
Parameters are compared bitwise: on XLA CPU a resumed run reproduces an
uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import resource
import shutil
import signal
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tiny_gan

from gan_jax import checkpoint, create_train_states
from gan_jax.errors import CheckpointError, NonFiniteError
from gan_jax.parallel import Parallel
from gan_jax.trainer import MAX_ROLLBACKS, train_and_evaluate

REFERENCE_STEPS = 16


def tiny(num_train_steps: int, **overrides):
    return tiny_gan.config(
        num_train_steps=num_train_steps,
        sample_every_steps=0,
        keep_checkpoints=3,
        **overrides,
    )


def steps_on_disk(workdir) -> list[int]:
    ckpts = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(ckpts) if n.isdigit())


def saved_state(workdir, step: int) -> dict[str, np.ndarray]:
    """Every leaf of a checkpoint's state (both states and the RNG key), by path."""
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    tree = ocp.PyTreeCheckpointer().restore(path)
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


def assert_bitwise_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    differ = [k for k in a if a[k].tobytes() != b[k].tobytes()]
    assert not differ, "leaves differ: " + ", ".join(
        f"{k} (max |diff| {np.max(np.abs(a[k].astype(np.float64) - b[k])):.3g})" for k in differ[:5]
    )


def copy_run(src, dst) -> str:
    shutil.copytree(src, dst)
    return str(dst)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    """A workdir trained straight to REFERENCE_STEPS, with checkpoints 8, 12 and 16."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    summary = train_and_evaluate(tiny(REFERENCE_STEPS), workdir)
    assert summary["status"] == "finished"
    assert steps_on_disk(workdir) == [8, 12, 16]
    return workdir


def test_resume_reproduces_an_uninterrupted_run_bitwise(reference, tmp_path):
    workdir = str(tmp_path / "run")
    assert train_and_evaluate(tiny(8), workdir)["status"] == "finished"
    assert_bitwise_equal(saved_state(workdir, 8), saved_state(reference, 8))
    summary = train_and_evaluate(tiny(REFERENCE_STEPS), workdir)
    assert (summary["status"], summary["step"]) == ("finished", REFERENCE_STEPS)
    assert_bitwise_equal(saved_state(workdir, 16), saved_state(reference, 16))
    again = train_and_evaluate(tiny(REFERENCE_STEPS), workdir)
    assert (again["status"], again["step"]) == ("already_finished", REFERENCE_STEPS)


def _largest_data_file(step_dir: str) -> str:
    files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
    return max(files, key=os.path.getsize)


def _flip_byte(step_dir: str) -> None:
    path = _largest_data_file(step_dir)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0xFF]))


def _truncate(step_dir: str) -> None:
    path = _largest_data_file(step_dir)
    os.truncate(path, os.path.getsize(path) // 2)


def _remove_file(step_dir: str) -> None:
    os.remove(_largest_data_file(step_dir))


def _garble_meta(step_dir: str) -> None:
    with open(os.path.join(step_dir, "meta", "metadata"), "w") as f:
        f.write('{"step": 16, "archi')


CORRUPTIONS = {
    # Orbax reads this one without complaint: only the checksum notices.
    "flipped_byte": _flip_byte,
    "truncated_file": _truncate,
    "removed_file": _remove_file,
    "garbled_meta": _garble_meta,
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_unusable_latest_checkpoint_falls_back_once_and_resumes_exactly(
    reference, tmp_path, caplog, corruption
):
    workdir = copy_run(reference, tmp_path / "run")
    ckpts = os.path.join(workdir, "checkpoints")
    CORRUPTIONS[corruption](os.path.join(ckpts, "16"))

    with caplog.at_level(logging.WARNING):
        summary = train_and_evaluate(tiny(REFERENCE_STEPS), workdir)

    # Match the trainer's own sentence: the temporary path holds "unusable" too, and
    # asyncio may log a failed background read that names that path.
    warnings = [r.getMessage() for r in caplog.records if "are unusable" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "step 12" in warnings[0] and "step 16" in warnings[0]
    assert (summary["status"], summary["step"]) == ("finished", REFERENCE_STEPS)
    # The bad checkpoint was moved aside, not deleted, and step 16 written again.
    assert os.path.isdir(os.path.join(workdir, "checkpoints_unusable", "16"))
    assert_bitwise_equal(saved_state(workdir, 16), saved_state(reference, 16))


def _tree_listing(root) -> list[tuple[str, int]]:
    out = []
    for d, _, files in os.walk(root):
        out += [
            (os.path.relpath(os.path.join(d, f), root), os.path.getsize(os.path.join(d, f)))
            for f in files
        ]
    return sorted(out)


def test_no_usable_checkpoint_is_one_error_and_deletes_nothing(reference, tmp_path):
    workdir = copy_run(reference, tmp_path / "run")
    for step, corrupt in zip((8, 12, 16), (_flip_byte, _remove_file, _garble_meta), strict=True):
        corrupt(os.path.join(workdir, "checkpoints", str(step)))
    before = _tree_listing(workdir)

    with pytest.raises(CheckpointError) as e:
        train_and_evaluate(tiny(20), workdir)

    message = str(e.value)
    assert "no usable checkpoint" in message and "Nothing was deleted" in message
    for step in (8, 12, 16):
        assert f"step {step}:" in message
    assert "checksum" in message  # The flipped byte was only caught by the checksum.
    assert _tree_listing(workdir) == before


def test_different_architecture_is_refused_and_nothing_moves(reference, tmp_path):
    workdir = copy_run(reference, tmp_path / "run")
    before = _tree_listing(workdir)
    with pytest.raises(CheckpointError, match=r"g_width: checkpoint 8 vs config 16"):
        train_and_evaluate(tiny(20, g_width=16), workdir)
    assert _tree_listing(workdir) == before


# --- A full disk ----------------------------------------------------------------------


@contextlib.contextmanager
def _small_tmpfs(path, size: str):
    os.makedirs(path)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here ({e}); the file size limit variant covers this")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def _disk_nearly_full(workdir):
    """Leaves about 8 KB free on the tmpfs holding `workdir`."""
    stat = os.statvfs(workdir)
    filler = os.path.join(os.path.dirname(workdir), "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * (stat.f_bavail * stat.f_frsize - 8192))
    try:
        yield
    finally:
        os.remove(filler)


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """Writes past `limit` bytes fail with EFBIG in this process (as on a full quota)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.parametrize("kind", ["tmpfs", "file_size_limit"])
def test_full_disk_is_one_clear_error_and_the_run_continues_after(reference, tmp_path, kind):
    if kind == "tmpfs":
        root = tmp_path / "disk"
        stack = contextlib.ExitStack()
        stack.enter_context(_small_tmpfs(root, "4m"))
        workdir = str(root / "run")
        expected = "No space left on device"
    else:
        stack = contextlib.ExitStack()
        workdir = str(tmp_path / "run")
        expected = "File too large"
    with stack:
        assert train_and_evaluate(tiny(4), workdir)["status"] == "finished"
        full = _disk_nearly_full(workdir) if kind == "tmpfs" else _file_size_limit(16 << 10)
        with full, pytest.raises(CheckpointError) as e:
            train_and_evaluate(tiny(8), workdir)
        message = str(e.value)
        assert "could not save the checkpoint of step 8" in message
        assert expected in message and "the checkpoint of step 4 is intact" in message
        assert steps_on_disk(workdir) == [4]  # A partial step 8 is never listed.

        summary = train_and_evaluate(tiny(8), workdir)  # Space is free again.
        assert (summary["status"], summary["step"]) == ("finished", 8)
        assert_bitwise_equal(saved_state(workdir, 8), saved_state(reference, 8))
        assert not glob.glob(os.path.join(workdir, "checkpoints", "*orbax-checkpoint-tmp*"))


# --- NaN/inf ----------------------------------------------------------------------------


def _inject_nonfinite(monkeypatch, at_step: int, times: int | None = 1, metrics: bool = True):
    """Makes the compiled step return NaN parameters (and losses) after step `at_step`.

    `times` bounds how often (None: every time the run passes that step).
    """
    real_compile = Parallel.compile
    done = []

    def compile_with_fault(self):
        train_fn = real_compile(self)

        def step(g, d, images, key):
            g, d, m = train_fn(g, d, images, key)
            if int(g.step) == at_step and (times is None or len(done) < times):
                done.append(at_step)
                g = g.replace(params=jax.tree.map(lambda x: x * jnp.nan, g.params))
                if metrics:
                    m = dict(m, d_loss=m["d_loss"] * jnp.nan)
            return g, d, m

        return step

    monkeypatch.setattr(Parallel, "compile", compile_with_fault)
    return done


def _params_finite(workdir, step: int) -> bool:
    state = saved_state(workdir, step)
    return all(np.isfinite(v).all() for k, v in state.items() if v.dtype.kind == "f")


def test_nan_loss_halts_naming_the_step_and_keeps_the_last_good_checkpoint(monkeypatch, tmp_path):
    _inject_nonfinite(monkeypatch, at_step=6)
    workdir = str(tmp_path / "run")
    with pytest.raises(NonFiniteError) as e:
        train_and_evaluate(tiny(16), workdir)
    message = str(e.value)
    assert "d_loss became nan at step 6" in message
    assert "the last good checkpoint (step 4)" in message
    assert steps_on_disk(workdir) == [4]
    assert _params_finite(workdir, 4)


def test_nan_parameters_are_never_saved(monkeypatch, tmp_path):
    _inject_nonfinite(monkeypatch, at_step=8, metrics=False)
    workdir = str(tmp_path / "run")
    with pytest.raises(NonFiniteError, match="parameters became NaN/inf by step 8"):
        train_and_evaluate(tiny(16), workdir)
    assert steps_on_disk(workdir) == [4]


def test_rollback_skips_the_bad_batches_and_finishes(monkeypatch, tmp_path, caplog):
    injected = _inject_nonfinite(monkeypatch, at_step=6)
    workdir = str(tmp_path / "run")
    with caplog.at_level(logging.WARNING):
        summary = train_and_evaluate(tiny(16, on_nonfinite="rollback"), workdir)
    assert injected == [6]
    assert (summary["status"], summary["step"]) == ("finished", 16)
    rolled = [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
    assert len(rolled) == 1 and "step 4" in rolled[0] and "step 6" in rolled[0]
    assert _params_finite(workdir, 16)
    # Detected while step 7 ran: steps 5-7 were undone, their batches skipped.
    meta = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints")).read_meta(16)
    assert meta["examples_per_process"] == (16 + 3) * 16

    # Resuming continues from the skipped-to position in the data, not from 16 * 16.
    monkeypatch.undo()
    straight = str(tmp_path / "straight")
    train_and_evaluate(tiny(20), straight)
    train_and_evaluate(tiny(20), workdir)
    assert meta_examples(workdir, 20) == (20 + 3) * 16
    assert meta_examples(straight, 20) == 20 * 16


def meta_examples(workdir, step) -> int:
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    return ckpt.read_meta(step)["examples_per_process"]


def test_rollback_gives_up_when_the_problem_persists(monkeypatch, tmp_path):
    _inject_nonfinite(monkeypatch, at_step=6, times=None)
    workdir = str(tmp_path / "run")
    with pytest.raises(NonFiniteError, match=f"again after {MAX_ROLLBACKS} rollbacks"):
        train_and_evaluate(tiny(16, on_nonfinite="rollback"), workdir)
    assert steps_on_disk(workdir) == [4]


# --- The Checkpointer on its own ----------------------------------------------------------


@pytest.fixture(scope="module")
def states():
    g, d = create_train_states(tiny(1), jax.random.key(0))
    return g, d, jax.random.key(1)


def test_checkpointer_owner_removes_leftovers_of_interrupted_saves(states, tmp_path):
    g, d, rng = states
    directory = str(tmp_path / "ckpts")
    ckpt = checkpoint.Checkpointer(directory, keep=None, owner=True)
    ckpt.save(1, g, d, rng, {})
    ckpt.close()
    leftover = os.path.join(directory, "2.orbax-checkpoint-tmp-123")
    shutil.copytree(os.path.join(directory, "1"), leftover)

    reader = checkpoint.Checkpointer(directory, keep=None)
    assert reader.all_steps() == [1] and os.path.isdir(leftover)  # Readers leave it alone.
    reader.close()
    owner = checkpoint.Checkpointer(directory, keep=None, owner=True)
    assert owner.all_steps() == [1] and not os.path.exists(leftover)
    owner.save(2, g, d, rng, {})
    owner.close()
    assert sorted(os.listdir(directory)) == ["1", "2"]


def test_checkpointer_keeps_the_newest_and_does_not_overwrite(states, tmp_path):
    g, d, rng = states
    directory = str(tmp_path / "ckpts")
    ckpt = checkpoint.Checkpointer(directory, keep=2, owner=True)
    for step in (1, 2, 3):
        ckpt.save(step, g, d, rng, {"tag": step})
    ckpt.save(3, g, d, rng, {"tag": "again"})  # Already saved: left as it is.
    ckpt.close()
    ckpt = checkpoint.Checkpointer(directory)
    assert ckpt.all_steps() == [2, 3]
    assert ckpt.read_meta(3)["tag"] == 3
    assert ckpt.read_meta(3)["checksum"] == checkpoint.checksum(checkpoint.state_tree(g, d, rng))


def test_checkpoint_every_steps_zero_saves_only_at_the_end(tmp_path):
    workdir = str(tmp_path / "run")
    summary = train_and_evaluate(tiny(4, checkpoint_every_steps=0), workdir)
    assert summary["status"] == "finished" and steps_on_disk(workdir) == [4]
