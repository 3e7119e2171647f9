"""Training-step throughput: gan_jax against a PyTorch DCGAN peer, in one process.

Both sides train the same network (the DCGAN of `gan_jax.default_config()`:
32x32x3, latent 100, widths 64) with the same step: one discriminator update on
a real and a generated batch, then one generator update, Adam included. The
data is synthetic and already on the device. Every runner (framework, batch,
dtype) lives in its own worker process, so that thread pools do not compete and
peak memory is per runner; the workers are timed in turns (round-robin over the
repeats), so a change in machine load hits all of them alike. The table reports
the median over the repeats; warm-up (compilation) is excluded and every timed
round ends with a device synchronisation.

Frameworks (`--frameworks`, comma-separated):
  jax                 gan_jax's compiled training function (as the trainer runs it);
                      `jax:lax`, `jax:lax+subpixel` and `jax:dot` pick the
                      convolution implementation (`conv_impl`, default "auto");
                      a suffix `@onednn` runs it with an XLA flag preset.
  torch               the pytorch/examples DCGAN step, eager.
  torch_compile       the same with `torch.compile`d modules.
  torch_cudagraph     the whole step captured as one CUDA graph (CUDA only).
With `--dtypes bfloat16`, gan_jax uses `config.dtype="bfloat16"` and PyTorch
`torch.autocast(dtype=torch.bfloat16)`.

Usage:
  python bench/step.py --batch_sizes 64,128 --dtypes float32,bfloat16 --json out.json
  XLA_FLAGS=... python bench/step.py   # to try XLA flags

torch is optional (`pip install -e .[bench]`; on a CPU-only machine
`pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu`); without it only
gan_jax's rows are produced. TensorFlow is never imported.
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
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IMAGE_SIZE, CHANNELS, LATENT, WIDTH = 32, 3, 100, 64
# XLA flag sets a gan_jax runner can name after "@", e.g. "jax@onednn".
XLA_FLAG_PRESETS = {
    # Matrix products through oneDNN instead of XNNPACK/YNNPACK.
    "onednn": "--xla_cpu_use_xnnpack=false --xla_cpu_experimental_onednn_fusion_type=dot",
}


@dataclass
class Result:
    framework: str
    batch: int
    dtype: str
    device: str
    compile_s: float
    peak_mib: float | None
    peak_kind: str
    times_s: list[float] = field(default_factory=list)
    steps: int = 0
    note: str = ""

    def images_per_s(self) -> float:
        return self.batch * self.steps / statistics.median(self.times_s)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["images_per_s"] = self.images_per_s() if self.times_s else None
        return d


# --------------------------------------------------------------------------- gan_jax


class JaxRunner:
    """gan_jax's training function as the trainer compiles it (`Parallel.compile`)."""

    def __init__(self, spec: str, batch: int, dtype: str, steps_per_dispatch: int):
        import jax
        import jax.numpy as jnp

        import gan_jax
        from gan_jax import conv, parallel

        self.jax = jax
        spec, _, preset = spec.partition("@")
        impl = spec.split(":", 1)[1] if ":" in spec else "auto"
        self.subpixel = impl.endswith("+subpixel")
        self.impl = impl.removesuffix("+subpixel")
        self.name = spec
        self.batch, self.dtype, self.k = batch, dtype, steps_per_dispatch
        config = gan_jax.default_config()
        config.batch_size = batch
        config.dtype = dtype
        config.subpixel = self.subpixel
        config.steps_per_dispatch = steps_per_dispatch
        self.config = config
        g, d = gan_jax.create_train_states(config, jax.random.key(0))
        g = g.replace(model=g.model.clone(conv_impl=self.impl))
        d = d.replace(model=d.model.clone(conv_impl=self.impl))
        self.par = parallel.Parallel(config)
        self.g, self.d = self.par.put_states(g, d)
        self.key = self.par.put_states(jax.random.key(1))
        images = jax.random.uniform(
            jax.random.key(2), (self.k, batch, IMAGE_SIZE, IMAGE_SIZE, CHANNELS), jnp.float32, -1, 1
        )
        self.images = jax.device_put(images, self.par.batch_sharding)
        self.fn = self.par.compile()
        self.device = jax.devices()[0].device_kind
        self.note = f"conv_impl={conv.resolve_conv_impl(self.impl)}" + (
            "+subpixel" if self.subpixel else ""
        )
        if self.k > 1:
            self.note += f", {self.k} steps/dispatch"
        if preset:
            self.note += f", XLA flags {preset!r}"

    def warm_up(self) -> tuple[float, float | None, str]:
        t = time.perf_counter()
        self.fn = self.fn.lower(self.g, self.d, self.images, self.key).compile()
        self._run(1)
        compile_s = time.perf_counter() - t
        self._run(2)
        stats = self.jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return compile_s, stats["peak_bytes_in_use"] / 2**20, "device peak"
        return compile_s, _peak_rss_mib(), "process RSS"

    def _run(self, dispatches: int) -> None:
        metrics = None
        for _ in range(dispatches):
            self.g, self.d, metrics = self.fn(self.g, self.d, self.images, self.key)
        self.jax.block_until_ready((self.g, self.d, metrics))

    def time(self, steps: int) -> tuple[float, int]:
        dispatches = max(1, steps // self.k)
        t = time.perf_counter()
        self._run(dispatches)
        return time.perf_counter() - t, dispatches * self.k


# --------------------------------------------------------------------------- PyTorch


def _torch_models(torch: Any) -> tuple[Any, Any]:
    nn = torch.nn
    g = nn.Sequential(
        nn.ConvTranspose2d(LATENT, WIDTH * 4, 4, 1, 0, bias=False),
        nn.BatchNorm2d(WIDTH * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(WIDTH * 4, WIDTH * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(WIDTH * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(WIDTH * 2, WIDTH, 4, 2, 1, bias=False),
        nn.BatchNorm2d(WIDTH),
        nn.ReLU(True),
        nn.ConvTranspose2d(WIDTH, CHANNELS, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    d = nn.Sequential(
        nn.Conv2d(CHANNELS, WIDTH, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(WIDTH, WIDTH * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(WIDTH * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(WIDTH * 2, WIDTH * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(WIDTH * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(WIDTH * 4, 1, 4, 1, 0, bias=False),
    )

    def init(m: Any) -> None:
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

    g.apply(init)
    d.apply(init)
    return g, d


class TorchRunner:
    """The pytorch/examples DCGAN training step (eager, compiled, or one CUDA graph)."""

    def __init__(self, mode: str, batch: int, dtype: str):
        import torch

        self.torch, self.mode, self.name = torch, mode, mode
        self.batch, self.dtype = batch, dtype
        cuda = torch.cuda.is_available()
        self.dev = torch.device("cuda" if cuda else "cpu")
        self.device = torch.cuda.get_device_name() if cuda else "cpu"
        if mode == "torch_cudagraph" and not cuda:
            raise RuntimeError("torch_cudagraph needs CUDA")
        torch.manual_seed(0)
        g, d = _torch_models(torch)
        self.g, self.d = g.to(self.dev), d.to(self.dev)
        capturable = mode == "torch_cudagraph"
        adam = dict(lr=2e-4, betas=(0.5, 0.999), capturable=capturable)
        self.opt_g = torch.optim.Adam(self.g.parameters(), **adam)
        self.opt_d = torch.optim.Adam(self.d.parameters(), **adam)
        self.g_fwd, self.d_fwd = self.g, self.d
        if mode == "torch_compile":
            # Static shapes: the discriminator sees the same shapes with and without
            # gradients, and dynamic-shape recompilation fails in Inductor on CPU.
            self.g_fwd = torch.compile(self.g, dynamic=False)
            self.d_fwd = torch.compile(self.d, dynamic=False)
        self.criterion = torch.nn.BCEWithLogitsLoss()
        self.real = torch.rand(batch, CHANNELS, IMAGE_SIZE, IMAGE_SIZE, device=self.dev) * 2 - 1
        self.ones = torch.ones(batch, device=self.dev)
        self.zeros = torch.zeros(batch, device=self.dev)
        self.graph = None
        self.note = "autocast bf16" if dtype == "bfloat16" else ""

    def _autocast(self) -> Any:
        return self.torch.autocast(
            self.dev.type,
            dtype=self.torch.bfloat16,
            enabled=self.dtype == "bfloat16",
            cache_enabled=self.mode != "torch_cudagraph",
        )

    def _step(self) -> None:
        torch, crit = self.torch, self.criterion
        with self._autocast():
            # Discriminator: real batch, then a generated batch (detached).
            self.d.zero_grad(set_to_none=True)
            err_real = crit(self.d_fwd(self.real).view(-1).float(), self.ones)
            err_real.backward()
            noise = torch.randn(self.batch, LATENT, 1, 1, device=self.dev)
            fake = self.g_fwd(noise)
            err_fake = crit(self.d_fwd(fake.detach()).view(-1).float(), self.zeros)
            err_fake.backward()
            self.opt_d.step()
            # Generator: the same generated batch through the updated discriminator.
            self.g.zero_grad(set_to_none=True)
            err_g = crit(self.d_fwd(fake).view(-1).float(), self.ones)
            err_g.backward()
            self.opt_g.step()

    def _sync(self) -> None:
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def warm_up(self) -> tuple[float, float | None, str]:
        torch = self.torch
        if self.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        if self.mode == "torch_cudagraph":
            self._capture()
        else:
            self._step()
        self._sync()
        compile_s = time.perf_counter() - t
        for _ in range(2):
            self._one()
        self._sync()
        if self.dev.type == "cuda":
            return compile_s, torch.cuda.max_memory_allocated() / 2**20, "device peak"
        return compile_s, _peak_rss_mib(), "process RSS"

    def _capture(self) -> None:
        # Whole-step capture, as in PyTorch's CUDA graphs notes: warm up on a side
        # stream, then capture one step; replays reuse the captured buffers.
        torch = self.torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        self.g.zero_grad(set_to_none=True)
        self.d.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()

    def _one(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()

    def time(self, steps: int) -> tuple[float, int]:
        self._sync()
        t = time.perf_counter()
        for _ in range(steps):
            self._one()
        self._sync()
        return time.perf_counter() - t, steps


# --------------------------------------------------------------------------- driver


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(
    conn: Any, spec: str, batch: int, dtype: str, steps_per_dispatch: int, cpus: list[int] | None
) -> None:
    """Builds and warms up one runner, then times rounds on request."""
    sys.path.insert(0, ROOT)
    if cpus:  # Before any thread pool exists: both frameworks size theirs from the affinity.
        os.sched_setaffinity(0, cpus)
    preset = spec.partition("@")[2]
    if preset:  # Before JAX is imported.
        flags = os.environ.get("XLA_FLAGS", "") + " " + XLA_FLAG_PRESETS[preset]
        os.environ["XLA_FLAGS"] = flags.strip()
    try:
        if spec.startswith("jax"):
            runner: Any = JaxRunner(spec, batch, dtype, steps_per_dispatch)
        else:
            runner = TorchRunner(spec, batch, dtype)
        compile_s, peak, kind = runner.warm_up()
    except Exception as e:  # A peer that fails (e.g. torch.compile) is reported, not fatal.
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", (runner.device, compile_s, peak, kind, runner.note)))
    while True:
        command, steps = conn.recv()
        if command != "time":
            return
        conn.send(runner.time(steps))


def _machine() -> dict[str, Any]:
    from importlib import metadata

    info: dict[str, Any] = {"python": platform.python_version(), "cpu_count": os.cpu_count()}
    for package in ("jax", "jaxlib", "flax", "optax"):
        info[package] = metadata.version(package)
    info["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        info["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        info["torch"] = None
    return info


def _table(results: list[Result]) -> str:
    rows = [
        "| framework | batch | dtype | images/s (median) | range | vs torch eager | "
        "compile s | peak MiB | notes |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    base = {
        (r.batch, r.dtype): r.images_per_s()
        for r in results
        if r.framework == "torch" and r.times_s
    }
    for r in results:
        if not r.times_s:
            rows.append(f"| {r.framework} | {r.batch} | {r.dtype} | failed | | | | | {r.note} |")
            continue
        ips = r.images_per_s()
        lo = r.batch * r.steps / max(r.times_s)
        hi = r.batch * r.steps / min(r.times_s)
        ratio = ips / base[(r.batch, r.dtype)] if (r.batch, r.dtype) in base else None
        peak = f"{r.peak_mib:.0f} ({r.peak_kind})" if r.peak_mib is not None else "n/a"
        rows.append(
            f"| {r.framework} | {r.batch} | {r.dtype} | {ips:.1f} | {lo:.0f}-{hi:.0f} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} | {r.compile_s:.1f} | {peak} | {r.note} |"
        )
    return "\n".join(rows)


def _torch_available() -> tuple[bool, bool]:
    """(torch importable, CUDA available), asked in a child so the driver stays light."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        try:
            return True, pool.apply(_cuda_available)
        except ImportError:
            return False, False


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch_sizes", default="64,128")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--frameworks", default="jax,torch,torch_compile")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per runner")
    p.add_argument("--steps", type=int, default=10, help="training steps per timed round")
    p.add_argument("--steps_per_dispatch", type=int, default=1, help="gan_jax steps per call")
    p.add_argument("--pause", type=float, default=0.3, help="seconds between turns")
    p.add_argument(
        "--cpus",
        default="",
        help="pin every worker to these CPUs, e.g. 0 (one core: robust to other load)",
    )
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    specs = [s for s in args.frameworks.split(",") if s]
    for spec in specs:
        name, _, preset = spec.partition("@")
        if name.split(":")[0] not in ("jax", "torch", "torch_compile", "torch_cudagraph"):
            raise SystemExit(f"unknown framework {spec!r}")
        if preset and (preset not in XLA_FLAG_PRESETS or not name.startswith("jax")):
            raise SystemExit(f"unknown XLA flag preset in {spec!r}; use {list(XLA_FLAG_PRESETS)}")
    has_torch, has_cuda = _torch_available()
    if not has_torch and any(s.startswith("torch") for s in specs):
        print("torch is not installed; running gan_jax only", file=sys.stderr)
        specs = [s for s in specs if not s.startswith("torch")]
    if not has_cuda and "torch_cudagraph" in specs:
        print("no CUDA device; skipping torch_cudagraph", file=sys.stderr)
        specs.remove("torch_cudagraph")
    # One process per runner: JAX must not grab most of the GPU in each of them.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    cpus = [int(c) for c in args.cpus.split(",") if c]
    ctx = multiprocessing.get_context("spawn")
    load_start = os.getloadavg()
    workers: list[tuple[Any, Any, Result]] = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        for dtype in args.dtypes.split(","):
            for spec in specs:
                conn, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker,
                    args=(child, spec, batch, dtype, args.steps_per_dispatch, cpus),
                )
                proc.start()
                status, payload = conn.recv()
                result = Result(spec, batch, dtype, "", 0.0, None, "")
                if status == "error":
                    print(f"{spec} batch {batch} {dtype}: {payload}", file=sys.stderr)
                    result.note = payload[:100]
                    proc.join()
                    workers.append((None, None, result))
                    continue
                device, result.compile_s, result.peak_mib, result.peak_kind, result.note = payload
                result.device = device
                workers.append((proc, conn, result))
                print(f"ready: {spec} batch {batch} {dtype} ({result.compile_s:.1f}s)", flush=True)

    try:
        for rep in range(args.repeats):
            for _, conn, result in workers:
                if conn is None:
                    continue
                time.sleep(args.pause)
                conn.send(("time", args.steps))
                seconds, steps = conn.recv()
                result.times_s.append(seconds)
                result.steps = steps
            print(f"round {rep + 1}/{args.repeats} done", flush=True)
    finally:
        for proc, conn, _ in workers:
            if conn is not None:
                conn.send(("quit", 0))
                proc.join()

    results = [r for _, _, r in workers]
    machine = _machine()
    machine["devices"] = sorted({r.device for r in results if r.device})
    machine["loadavg_start"], machine["loadavg_end"] = load_start, os.getloadavg()
    print()
    print(
        f"{machine['cpu']}, {machine['cpu_count']} CPUs, devices {machine['devices']}; "
        f"jax {machine['jax']}, torch {machine['torch']}; load average "
        f"{load_start[0]:.1f} -> {machine['loadavg_end'][0]:.1f}; median of {args.repeats} "
        f"rounds of {args.steps} steps" + (f"; workers pinned to CPUs {cpus}" if cpus else "")
    )
    print(_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": machine, "args": vars(args), "results": [r.as_dict() for r in results]},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
