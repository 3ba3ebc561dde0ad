"""One training step (forward, backward, update) of the factored Z-loss output layer against what a
user would pick instead, timed side by side in one process:

  (a) softmax:   nn.Linear + F.cross_entropy + SGD                (the baseline of the ratios)
  (b) dense Z:   nn.Linear + lossbook's dense Z-loss + SGD          (same loss, explicit outputs)
  (c) adaptive:  nn.AdaptiveLogSoftmaxWithLoss + SGD, approximate; cheap when the targets are
                 Zipfian (frequent classes in its head), slower when they are uniform: both shown
  (f) factored:  lossbook.FactoredSphericalLayer("z_loss"), exact, O(d²) per example

For each (D, d) it prints milliseconds per step, the ratio softmax/factored next to the theory
D/(4d), and peak memory: on CUDA, torch.cuda.max_memory_allocated per method; on CPU, the peak
resident memory of a fresh process that runs only that method, minus that of a process that only
imported torch (so each number is the method's own footprint).

    python benchmarks/spherical_step.py                       # CPU, the issue's grid
    python benchmarks/spherical_step.py --device cuda --D 1000000 --m 1024
    python benchmarks/spherical_step.py --quick               # small grid, a few seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lossbook.functional import z_loss  # noqa: E402
from lossbook.spherical import FactoredSphericalLayer  # noqa: E402

METHODS = ("softmax", "dense_z", "adaptive_zipf", "adaptive_uniform", "factored")


def zipf_targets(m: int, D: int, generator: torch.Generator, device) -> torch.Tensor:
    ranks = torch.arange(1, D + 1, dtype=torch.float64)
    return torch.multinomial(1.0 / ranks, m, replacement=True, generator=generator).to(device)


def make_step(method: str, D: int, d: int, m: int, device, lr: float = 0.01):
    """Return a zero-argument function doing one full training step of ``method``."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(m, d, generator=g).to(device).requires_grad_(True)
    uniform = torch.randint(0, D, (m,), generator=g).to(device)
    if method in ("softmax", "dense_z"):
        lin = torch.nn.Linear(d, D, device=device)
        opt = torch.optim.SGD(lin.parameters(), lr=lr)
        loss_fn = F.cross_entropy if method == "softmax" else z_loss

        def step():
            opt.zero_grad(set_to_none=True)
            h.grad = None
            loss_fn(lin(h), uniform).backward()
            opt.step()

        return step
    if method.startswith("adaptive"):
        cutoffs = [c for c in (2_000, 20_000, 200_000) if c < D]
        asm = torch.nn.AdaptiveLogSoftmaxWithLoss(d, D, cutoffs=cutoffs, div_value=4.0).to(device)
        opt = torch.optim.SGD(asm.parameters(), lr=lr)
        y = zipf_targets(m, D, g, device) if method == "adaptive_zipf" else uniform

        def step():
            opt.zero_grad(set_to_none=True)
            h.grad = None
            asm(h, y).loss.backward()
            opt.step()

        return step
    layer = FactoredSphericalLayer(d, D, loss="z_loss", device=device)

    def step():
        h.grad = None
        layer(h, uniform).backward()
        layer.step(lr)

    return step


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_step(step, device, *, min_time: float, max_reps: int) -> float:
    step()  # warm-up
    sync(device)
    reps, start = 0, time.perf_counter()
    while True:
        step()
        reps += 1
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or reps >= max_reps:
            return elapsed / reps


def vm_hwm_kb() -> int:
    """This process's peak resident memory (VmHWM). Unlike ru_maxrss, it starts afresh at exec,
    so a child does not inherit its parent's high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def peak_memory_mb(method: str, D: int, d: int, m: int, device) -> float:
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        step = make_step(method, D, d, m, device)
        step()
        step()
        sync(device)
        return torch.cuda.max_memory_allocated() / 2**20
    code = (
        "import sys; sys.path.insert(0, %r); import benchmarks.spherical_step as b; import torch;"
        "torch.set_num_threads(1); s=b.make_step(%r,%d,%d,%d,'cpu'); s(); s(); print(b.vm_hwm_kb())"
    ) % (str(Path(__file__).resolve().parent.parent), method, D, d, m)
    base = ("import sys; sys.path.insert(0, %r); import benchmarks.spherical_step as b; print(b.vm_hwm_kb())"
            % str(Path(__file__).resolve().parent.parent))
    run = lambda c: int(subprocess.run([sys.executable, "-c", c], capture_output=True, text=True, check=True).stdout)  # noqa: E731
    return (run(code) - run(base)) / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--D", type=int, nargs="+", default=[10_000, 100_000, 500_000, 1_000_000])
    p.add_argument("--d", type=int, nargs="+", default=[128, 256])
    p.add_argument("--m", type=int, default=128)
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per method and setting")
    p.add_argument("--max-reps", type=int, default=200)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--quick", action="store_true", help="D ∈ {1e4, 1e5}, d = 128, short timings")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.D, args.d, args.min_time = [10_000, 100_000], [128], 0.3
    rows = []
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"cpu={platform.processor() or platform.machine()} m={args.m}")
    header = f"{'D':>9} {'d':>4} " + " ".join(f"{k:>16}" for k in METHODS) + f" {'softmax/fact':>12} {'D/(4d)':>7}"
    print("ms per step" + " " * 4 + "\n" + header)
    for d in args.d:
        for D in args.D:
            ms = {k: 1e3 * time_step(make_step(k, D, d, args.m, args.device), args.device,
                                     min_time=args.min_time, max_reps=args.max_reps) for k in METHODS}
            mem = {} if args.no_memory else {k: peak_memory_mb(k, D, d, args.m, args.device) for k in METHODS}
            ratio = ms["softmax"] / ms["factored"]
            rows.append({"D": D, "d": d, "m": args.m, "ms": ms, "peak_mb": mem, "ratio": ratio, "theory": D / (4 * d)})
            print(f"{D:>9} {d:>4} " + " ".join(f"{ms[k]:>16.2f}" for k in METHODS)
                  + f" {ratio:>12.1f} {D / (4 * d):>7.1f}")
            if mem:
                print(f"{'peak MB':>14} " + " ".join(f"{mem[k]:>16.1f}" for k in METHODS))
    if args.out:
        Path(args.out).write_text(json.dumps({"device": args.device, "torch": torch.__version__, "rows": rows},
                                             indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
