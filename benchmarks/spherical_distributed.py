"""The model-parallel factored layer (lossbook.spherical.distributed) on P local gloo processes:
bytes sent per step and step time against P and D, beside the single-process layer in the same run.

For each D and each P it launches P processes (one torch thread each), builds a
DistributedFactoredSphericalLayer("z_loss") with D classes sharded P ways, and times --steps
training steps (forward, backward, exact update) on the same random batch stream on every rank.
It prints:

  ms/step      the median step (the slowest rank's, per step: the ranks wait for each other)
  payload B    bytes handed to the collectives per step (one all-reduce of the m×d target rows)
  sent B       bytes one rank sends per step with a ring all-reduce: 2(P−1)/P × payload
  V MB/rank    the rank's shard of V
  single ms    the single-process FactoredSphericalLayer (one thread) at the same D, in this process

The payload is m·d·itemsize whatever D: the column "payload B" is constant down each P. On one
shared CPU the P processes compete for the same cores, so the step time says little about a real
cluster (where each rank has its own device); it shows the cost of the collective against the step.

    python benchmarks/spherical_distributed.py                      # D ∈ {1e4, 1e5, 1e6}, P ∈ {1, 2, 4}
    python benchmarks/spherical_distributed.py --D 100000 --P 2 --steps 50 --d 256
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lossbook.spherical import FactoredSphericalLayer
from lossbook.spherical.distributed import DistributedFactoredSphericalLayer, launch_local


def _batches(steps: int, m: int, d: int, D: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(m, d, generator=g), torch.randint(0, D, (m,), generator=g)) for _ in range(steps)]


def _worker(D: int, d: int, m: int, steps: int, warmup: int, lr: float) -> dict:
    import torch.distributed as dist

    rank = dist.get_rank()
    layer = DistributedFactoredSphericalLayer(d, D, loss="z_loss", generator=torch.Generator().manual_seed(rank))
    batches = _batches(warmup + steps, m, d, D)
    times, sent, payload = [], [], []
    for i, (h, y) in enumerate(batches):
        dist.barrier()
        before = layer.comm.snapshot()
        t0 = time.perf_counter()
        layer(h, y).backward()
        layer.step(lr)
        t = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        after = layer.comm.snapshot()
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # the step ends for all when the slowest rank's does
        if i >= warmup:
            times.append(float(t))
            sent.append(after["sent_bytes"] - before["sent_bytes"])
            payload.append(after["payload_bytes"] - before["payload_bytes"])
    return {"rank": rank, "rows": len(layer.V), "V_mb": layer.V.numel() * layer.V.element_size() / 2**20,
            "ms": 1e3 * statistics.median(times), "sent_bytes": statistics.median(sent),
            "payload_bytes": statistics.median(payload), "spread": layer.replica_spread()}


def _single(D: int, d: int, m: int, steps: int, warmup: int, lr: float) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        layer = FactoredSphericalLayer(d, D, loss="z_loss", generator=torch.Generator().manual_seed(0))
        times = []
        for i, (h, y) in enumerate(_batches(warmup + steps, m, d, D)):
            t0 = time.perf_counter()
            layer(h, y).backward()
            layer.step(lr)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(times)
    finally:
        torch.set_num_threads(threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--D", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--P", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--m", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--start-method", default="fork" if sys.platform.startswith("linux") else "spawn",
                   choices=["fork", "spawn", "forkserver"])
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    if min(args.P) < 1 or any(D < max(args.P) for D in args.D):
        p.error("every P must be ≥ 1 and every D ≥ max(P)")
    print(f"backend=gloo torch={torch.__version__} cpu={platform.processor() or platform.machine()} "
          f"cores={torch.get_num_threads()} d={args.d} (+1 bias) m={args.m} float32, one thread per rank, "
          f"{args.steps} timed steps")
    print(f"{'D':>9} {'P':>2} {'ms/step':>8} {'payload B':>10} {'sent B':>9} {'V MB/rank':>10} {'single ms':>10}")
    rows = []
    for D in args.D:
        single = _single(D, args.d, args.m, args.steps, args.warmup, args.lr)
        for P in args.P:
            res = launch_local(_worker, P, D, args.d, args.m, args.steps, args.warmup, args.lr,
                               start_method=args.start_method)
            r0 = res[0]
            if any(r["spread"] != 0.0 for r in res):
                print(f"warning: the replicas differ (spread {max(r['spread'] for r in res):.1e})")
            rows.append({"D": D, "P": P, "d": args.d, "m": args.m, "ms": r0["ms"], "payload_bytes": r0["payload_bytes"],
                         "sent_bytes": r0["sent_bytes"], "V_mb_per_rank": max(r["V_mb"] for r in res),
                         "single_ms": single})
            print(f"{D:>9} {P:>2} {r0['ms']:>8.2f} {r0['payload_bytes']:>10.0f} {r0['sent_bytes']:>9.0f} "
                  f"{max(r['V_mb'] for r in res):>10.1f} {single:>10.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"backend": "gloo", "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
