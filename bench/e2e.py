"""Steady-state throughput of the real trainer against the bare training step.

Runs `gan_jax.train_and_evaluate` (the tfds/embedded input pipeline, TensorBoard
logging, sample grids and orbax checkpoints all on) in a fresh workdir, and
times the bare compiled step (`bench/step.py`'s gan_jax runner: same config,
synthetic data on the device) before and after it. The trainer's rate is the
median of its logged `images_per_sec` over the log intervals after the first
(which includes compilation); the intervals with a checkpoint or a sample grid
are part of that median, as they are part of training.

Usage:
  python bench/e2e.py --dataset digits --batch_size 128 --steps 600
  python bench/e2e.py --dataset cifar10 --data_dir ~/tensorflow_datasets --dtype bfloat16

Needs TensorFlow (the input pipeline); `bench/step.py` does not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from step import JaxRunner  # noqa: E402

import gan_jax  # noqa: E402


def _bare(args: argparse.Namespace) -> float:
    """Images/s of the bare step: the median of `args.repeats` rounds of `args.log_every` steps."""
    runner = JaxRunner("jax", args.batch_size, args.dtype, args.steps_per_dispatch)
    runner.warm_up()
    rates = []
    for _ in range(args.repeats):
        seconds, steps = runner.time(args.log_every)
        rates.append(args.batch_size * steps / seconds)
    return statistics.median(rates)


def _trainer(args: argparse.Namespace, workdir: str) -> tuple[float, float, list[float]]:
    config = gan_jax.default_config()
    config.dataset = args.dataset
    config.data_dir = args.data_dir
    config.batch_size = args.batch_size
    config.dtype = args.dtype
    config.steps_per_dispatch = args.steps_per_dispatch
    config.num_train_steps = args.steps
    config.log_every_steps = args.log_every
    config.checkpoint_every_steps = args.checkpoint_every
    config.sample_every_steps = args.sample_every
    t = time.perf_counter()
    gan_jax.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - t
    _, rates = gan_jax.read_metrics(workdir)["images_per_sec"]
    steady = [float(r) for r in rates[1:]]
    return statistics.median(steady), wall, steady


def _startup(args: argparse.Namespace, workdir: str) -> float:
    """Seconds from launching `train.py` to the end of its first step (one-step run, saved)."""
    cmd = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        f"--config={os.path.join(ROOT, 'configs', 'default.py')}",
        f"--workdir={workdir}",
        f"--config.dataset={args.dataset}",
        f"--config.batch_size={args.batch_size}",
        f"--config.dtype={args.dtype}",
        "--config.num_train_steps=1",
        "--config.log_every_steps=1",
    ]
    if args.data_dir:
        cmd.append(f"--config.data_dir={args.data_dir}")
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="digits", help="a config.dataset value")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--steps_per_dispatch", type=int, default=1)
    p.add_argument("--steps", type=int, default=600, help="trainer steps")
    p.add_argument("--log_every", type=int, default=50)
    p.add_argument("--checkpoint_every", type=int, default=200)
    p.add_argument("--sample_every", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5, help="bare-step rounds (before and after)")
    p.add_argument("--workdir", default=None, help="default: a new temporary directory")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    workdir = args.workdir or tempfile.mkdtemp(prefix="gan_jax_e2e_")
    startup = _startup(args, os.path.join(workdir, "startup"))
    before = _bare(args)
    trainer, wall, intervals = _trainer(args, os.path.join(workdir, "run"))
    after = _bare(args)
    bare = statistics.mean([before, after])
    rows = [
        ("bare step (before)", before),
        ("trainer, steady state", trainer),
        ("bare step (after)", after),
    ]
    print(
        f"\n{args.dataset}, batch {args.batch_size}, {args.dtype}, "
        f"{args.steps_per_dispatch} step(s)/dispatch; log every {args.log_every}, checkpoint "
        f"every {args.checkpoint_every}, samples every {args.sample_every} steps; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| run | images/s | vs bare step |\n|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} | {rate / bare:.2f}x |")
    print(f"trainer: {args.steps} steps in {wall:.1f}s wall, compilation and start-up included")
    print(f"start-up: `python train.py` to the end of its first step (saved): {startup:.1f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "bare_before": before,
                    "bare_after": after,
                    "trainer_steady": trainer,
                    "trainer_intervals": intervals,
                    "trainer_wall_s": wall,
                    "startup_s": startup,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
