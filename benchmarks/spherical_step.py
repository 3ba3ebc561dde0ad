"""One training step (forward, backward, update) of the factored Z-loss output layer against what a
user would pick instead, timed side by side in one process:

  (a) softmax:   nn.Linear + F.cross_entropy + SGD                (the baseline of the ratios)
  (b) dense Z:   nn.Linear + lossbook's dense Z-loss + SGD          (same loss, explicit outputs)
  (c) adaptive:  nn.AdaptiveLogSoftmaxWithLoss + SGD, approximate; cheap when the targets are
                 Zipfian (frequent classes in its head), slower when they are uniform: both shown
  (h) hierarchical: lossbook.HierarchicalSoftmax + SGD (sparse gradients), the two-level softmax
                 with √D clusters of equal Zipf mass, exactly normalised, O(d·(K + D/K)) per
                 example on average when the targets follow the class counts it was built from;
                 Zipfian targets (that case) and uniform targets (most of them in the large clusters
                 of rare classes): both shown
  (f) factored:  lossbook.FactoredSphericalLayer("z_loss"), exact, O(d²) per example

For each (D, d) it prints milliseconds per step, the ratio softmax/factored next to the theory
D/(4d), the ratios hierarchical/factored ("hzipf/fact", "hunif/fact"), and peak memory. The
ratios' sides run in alternating rounds (--rounds, default 5; lossbook.lab.benchmark.time_interleaved)
so that the drift of a shared machine's speed falls on all of them; each ratio printed is the
median of the per-round ratios (the softmax/factored range follows the row). Every
method runs with the process's threads (torch's default: one per core); the factored step is also
timed with one thread ("factored/1t"): its ~150 small d×d and m×d operations are each too small to
share, so a second thread only adds synchronisation, while the softmax baseline's large GEMMs use
every core. "softmax/fact1t" is the ratio with each method at its own best setting;
"softmax/fact" keeps the threads equal. Peak memory: on CUDA, torch.cuda.max_memory_allocated per
method; on CPU, the peak
resident memory of a fresh process that runs only that method, minus that of a process that only
imported torch (so each number is the method's own footprint).

    python benchmarks/spherical_step.py                       # CPU, the issue's grid
    python benchmarks/spherical_step.py --device cuda --D 1000000 --m 1024
    python benchmarks/spherical_step.py --quick               # small grid, a few minutes
    python benchmarks/spherical_step.py --quick --threads 1   # every method on one thread (a busy machine)
    python benchmarks/spherical_step.py --flops --D 100000 --d 256   # the factored step against its flop bound

--flops prints, instead of the comparison, the factored step's flop bound: its matrix products'
multiply-adds counted from their shapes (lossbook.lab.benchmark.count_flops; the forward and the
exact update, elementwise work and the rare O(d³) inverses not counted), the rate it achieves
(GFLOP/s = 2·multiply-adds / time), the rates of two plain matrix products in the layer's dtype
measured in the same alternating rounds, a square (d+1)×(d+1) one and an (m×(d+1))·((d+1)×(d+1))
one (the step's commonest shape), and the ratios: how many times the step's time exceeds that of
its arithmetic at each product's rate, with the process's threads and with one.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lossbook.lab.benchmark import OUTPUT_LAYER_METHODS as METHODS
from lossbook.lab.benchmark import (
    count_flops,
    matmul_step,
    output_layer_step,
    peak_memory_mb,
    round_ratios,
    time_interleaved,
    time_step,
)


def flop_bound(args) -> int:
    """The --flops table (see the module docstring)."""
    rows = []
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"cpu={platform.processor() or platform.machine()} m={args.m} dtype={torch.get_default_dtype()}")
    print("GFLOP/s: the factored step's (2 × its counted multiply-adds / its median time), a square (d+1)² product's")
    print("('sq') and an (m×(d+1))·((d+1)×(d+1)) product's ('md²', the step's commonest shape); 'x' = product rate /")
    print("step rate, i.e. how many times the step's time exceeds that of its arithmetic at the product's rate")
    print(f"{'D':>9} {'d':>4} {'threads':>7} {'M mul-add':>9} {'ms/step':>8} {'GFLOP/s':>8} {'sq GFLOP/s':>10} "
          f"{'x sq':>6} {'md² GFLOP/s':>11} {'x md²':>6}")
    for d in args.d:
        for D in args.D:
            step = output_layer_step("factored", D, d, args.m, args.device)
            step()
            flops = count_flops(step)
            sq, sq_flops = matmul_step(d + 1, args.device)
            md, md_flops = matmul_step(d + 1, args.device, m=args.m)
            t = time_interleaved({"factored": step, "sq": sq, "md": md, "factored/1t": step, "sq/1t": sq, "md/1t": md},
                                 args.device, rounds=args.rounds, min_time=args.rounds * args.min_time,
                                 max_reps=args.max_reps * args.rounds,
                                 threads={"factored/1t": 1, "sq/1t": 1, "md/1t": 1})
            for suffix, threads in (("", torch.get_num_threads()), ("/1t", 1)):
                rate = [flops["total"] / x for x in t["factored" + suffix]]
                res = {"D": D, "d": d, "m": args.m, "threads": threads, "flops": flops,
                       "ms": 1e3 * statistics.median(t["factored" + suffix]),
                       "gflops": statistics.median(rate) / 1e9}
                for name, n in (("sq", sq_flops), ("md", md_flops)):
                    ref = [n / x for x in t[name + suffix]]
                    res[f"{name}_gflops"] = statistics.median(ref) / 1e9
                    res[f"x_{name}"] = statistics.median(b / a for a, b in zip(rate, ref))  # per round
                rows.append(res)
                print(f"{D:>9} {d:>4} {threads:>7} {flops['total'] / 2e6:>9.1f} {res['ms']:>8.2f} {res['gflops']:>8.1f} "
                      f"{res['sq_gflops']:>10.1f} {res['x_sq']:>6.1f} {res['md_gflops']:>11.1f} {res['x_md']:>6.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": args.device, "torch": torch.__version__, "flop_bound": rows},
                                             indent=1))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--D", type=int, nargs="+", default=[10_000, 100_000, 500_000, 1_000_000])
    p.add_argument("--d", type=int, nargs="+", default=[128, 256])
    p.add_argument("--m", type=int, default=128)
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per method and setting")
    p.add_argument("--max-reps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of softmax and factored (the ratio)")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--threads", type=int, help="torch threads for every method (default: torch's, one per core)")
    p.add_argument("--quick", action="store_true", help="D ∈ {1e4, 1e5}, d = 128, short timings")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--flops", action="store_true", help="the factored step against its flop bound (see above)")
    args = p.parse_args(argv)
    if args.quick:
        args.D, args.d, args.min_time = [10_000, 100_000], [128], 0.3
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be ≥ 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.flops:
        return flop_bound(args)
    rows = []
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"cpu={platform.processor() or platform.machine()} m={args.m}")
    cols = [*METHODS, "factored/1t"]
    width = {k: max(16, len(k)) for k in cols}
    header = (f"{'D':>9} {'d':>4} " + " ".join(f"{k:>{width[k]}}" for k in cols)
              + f" {'softmax/fact':>12} {'softmax/fact1t':>14} {'D/(4d)':>7} {'hzipf/fact':>10} {'hunif/fact':>10}")
    print("ms per step" + " " * 4 + "\n" + header)
    for d in args.d:
        for D in args.D:
            threads = torch.get_num_threads()
            # the ratio's two sides (and the 1-thread factored step) in alternating rounds, so that
            # the machine's drift over seconds falls on both; the other methods are context
            def make(k: str, D: int = D, d: int = d):
                return output_layer_step(k, D, d, args.m, args.device)

            inter = time_interleaved({"softmax": make("softmax"), "factored": make("factored"),
                                      "factored/1t": make("factored"), "hierarchical_zipf": make("hierarchical_zipf"),
                                      "hierarchical_uniform": make("hierarchical_uniform")},
                                     args.device, rounds=args.rounds,
                                     min_time=args.rounds * args.min_time, max_reps=args.max_reps * args.rounds,
                                     threads={"factored/1t": 1})
            ms = {k: 1e3 * statistics.median(v) for k, v in inter.items()}
            for k in METHODS:
                if k not in ms:
                    ms[k] = 1e3 * time_step(make(k), args.device, min_time=args.min_time, max_reps=args.max_reps)
            per_round = round_ratios(inter, "softmax", "factored")
            per_round_1t = round_ratios(inter, "softmax", "factored/1t")
            per_round_h = {k: round_ratios(inter, f"hierarchical_{k}", "factored") for k in ("zipf", "uniform")}
            ratio_h = {k: statistics.median(v) for k, v in per_round_h.items()}
            mem = {} if args.no_memory else {
                k: peak_memory_mb("lossbook.lab.benchmark:output_layer_step", k, D, d, args.m, device=args.device)
                for k in METHODS}
            ratio, ratio_1t = statistics.median(per_round), statistics.median(per_round_1t)
            rows.append({"D": D, "d": d, "m": args.m, "threads": threads, "ms": ms, "peak_mb": mem, "ratio": ratio,
                         "ratio_factored_1_thread": ratio_1t, "ratio_rounds": per_round,
                         "ratio_rounds_factored_1_thread": per_round_1t, "theory": D / (4 * d),
                         "ratio_hierarchical_zipf": ratio_h["zipf"], "ratio_hierarchical_uniform": ratio_h["uniform"],
                         "ratio_rounds_hierarchical_zipf": per_round_h["zipf"],
                         "ratio_rounds_hierarchical_uniform": per_round_h["uniform"]})
            print(f"{D:>9} {d:>4} " + " ".join(f"{ms[k]:>{width[k]}.2f}" for k in cols)
                  + f" {ratio:>12.1f} {ratio_1t:>14.1f} {D / (4 * d):>7.1f}"
                  + f" {ratio_h['zipf']:>10.1f} {ratio_h['uniform']:>10.1f}"
                  + f"   rounds {min(per_round):.0f}–{max(per_round):.0f}, 1t {min(per_round_1t):.0f}–{max(per_round_1t):.0f}")
            if mem:
                print(f"{'peak MB':>14} " + " ".join(f"{mem[k]:>{width[k]}.1f}" for k in METHODS))
    if args.out:
        Path(args.out).write_text(json.dumps({"device": args.device, "torch": torch.__version__, "rows": rows},
                                             indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
