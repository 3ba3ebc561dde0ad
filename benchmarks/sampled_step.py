"""One training step (forward, backward, optimiser step) of the sampled output layers against the
full softmax, timed side by side in one process:

  softmax      nn.Linear + F.cross_entropy + SGD over all D classes   (the baseline of the ratios)
  sampled_<S>  lossbook.SampledSoftmaxLayer: S log-uniform candidates shared by the batch, logQ
               correction, accidental hits removed, sparse gradients + SGD (O(m·S·d) per step)
  pfc_<r>      lossbook.PartialFC (CosFace, s = 64, m = 0.4) on a fraction r of the class centres,
               sparse gradients + SGD
  margin_full  the same CosFace head on all D centres (PartialFC with r = 1): what Partial FC saves
               against when the loss is a margin softmax

For each D it prints milliseconds per step, the speed-up softmax/method next to the target
0.5·D/S (S = r·D for Partial FC), and peak memory: on CUDA, torch.cuda.max_memory_allocated per
method; on CPU, the peak resident memory of a fresh process that runs only that method, minus that
of a process that only imported torch and lossbook. Results go to
``<out-dir>/sampled_step_<device>.{txt,json}``.

    python benchmarks/sampled_step.py                                   # CPU, the issue's grid
    python benchmarks/sampled_step.py --device cuda
    python benchmarks/sampled_step.py --D 10000 --S 100 1000 --reps 2 --out-dir /tmp   # smoke run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lossbook.lab.benchmark import Log, machine_line, output_layer_step, peak_memory_mb, save_results, time_step
from lossbook.margin import CosFace
from lossbook.sampled import PartialFC, SampledSoftmaxLayer


def method_names(sizes: list[int], rates: list[float], full_margin: bool) -> list[str]:
    names = ["softmax"] + [f"sampled_{s}" for s in sizes] + [f"pfc_{r:g}" for r in rates]
    return names + (["margin_full"] if full_margin else [])


def make_step(method: str, D: int, d: int, m: int, device, lr: float = 0.01):
    """Return a zero-argument function doing one full training step of ``method``."""
    if method == "softmax":
        return output_layer_step("softmax", D, d, m, device, lr=lr)
    g = torch.Generator().manual_seed(0)  # the same h and y as output_layer_step's
    h = torch.randn(m, d, generator=g).to(device).requires_grad_(True)
    y = torch.randint(0, D, (m,), generator=g).to(device)
    if method.startswith("sampled_"):
        s = int(method.split("_")[1])
        layer = SampledSoftmaxLayer(d, D, s, sampler="log_uniform", sparse=True, device=device,
                                    generator=torch.Generator(device=device).manual_seed(1))
    else:
        rate = 1.0 if method == "margin_full" else float(method.split("_")[1])
        layer = PartialFC(d, D, sample_rate=rate, margin=CosFace(scale=64.0, margin=0.4), sparse=True, device=device,
                          generator=torch.Generator(device=device).manual_seed(1))
    opt = torch.optim.SGD(layer.parameters(), lr=lr)

    def step():
        opt.zero_grad(set_to_none=True)
        h.grad = None
        layer(h, y).backward()
        opt.step()

    return step


def target(method: str, D: int) -> float | None:
    """The issue's target speed-up 0.5·D/S."""
    if method.startswith("sampled_"):
        return 0.5 * D / int(method.split("_")[1])
    if method.startswith("pfc_"):
        return 0.5 / float(method.split("_")[1])
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--D", type=int, nargs="+", default=[100_000, 1_000_000], help="numbers of classes")
    p.add_argument("--d", type=int, default=256, help="embedding size")
    p.add_argument("--m", type=int, default=128, help="batch size")
    p.add_argument("--S", type=int, nargs="+", default=[1024, 8192], help="sampled-softmax candidates per step")
    p.add_argument("--rates", type=float, nargs="+", default=[0.1], help="Partial FC sample rates")
    p.add_argument("--no-full-margin", action="store_true", help="skip the full CosFace head (PartialFC r = 1)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per method and setting")
    p.add_argument("--reps", type=int, default=50, help="at most this many timed steps per method and setting")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = method_names(args.S, args.rates, not args.no_full_margin)
    lines = Log()
    say = lines.say
    say(f"{machine_line(device)} d={args.d} m={args.m}")
    rows = []
    width = max(14, *(len(n) for n in names))
    for D in args.D:
        active = [n for n in names if not (n.startswith("sampled_") and int(n.split("_")[1]) > D)]
        ms = {k: 1e3 * time_step(make_step(k, D, args.d, args.m, device), device, min_time=args.min_time,
                                 max_reps=args.reps) for k in active}
        mem = {} if args.no_memory else {k: peak_memory_mb("benchmarks.sampled_step:make_step", k, D, args.d, args.m, device=device) for k in active}
        speedup = {k: ms["softmax"] / ms[k] for k in active}
        goal = {k: target(k, D) for k in active}
        rows.append({"D": D, "d": args.d, "m": args.m, "ms": ms, "speedup_vs_softmax": speedup,
                     "target_speedup": goal, "peak_mb": mem,
                     "pfc_vs_full_margin": {k: ms["margin_full"] / ms[k] for k in active if k.startswith("pfc_")}
                     if "margin_full" in ms else {}})
        say(f"\nD = {D}")
        say(f"{'method':<{width}} {'ms/step':>10} {'softmax/method':>15} {'target 0.5·D/S':>15} {'met':>4}"
            + ("" if args.no_memory else f" {'peak MB':>10}"))
        for k in active:
            t = goal[k]
            met = "" if t is None else ("yes" if speedup[k] >= t else "no")
            say(f"{k:<{width}} {ms[k]:>10.2f} {speedup[k]:>15.2f} {'' if t is None else f'{t:.1f}':>15} {met:>4}"
                + ("" if args.no_memory else f" {mem[k]:>10.1f}"))
        if "margin_full" in ms:
            for k in active:
                if k.startswith("pfc_"):
                    say(f"{k} vs the full CosFace head: {ms['margin_full'] / ms[k]:.2f}x")
    save_results(args.out_dir, "sampled_step", device, lines, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
