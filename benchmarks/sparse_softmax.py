"""The sparse maps' losses against softmax cross-entropy, timed side by side in one process.

One forward and backward pass of the loss on a batch of m logit rows with C classes (the output
layer's matrix product is the same for every method and is left out, so the ratios show what the
loss itself costs; --d adds an nn.Linear d → C in front and an SGD step, the cost a training step
sees):

  softmax           F.cross_entropy                                   (the baseline of the ratios)
  sparse_softmax_k  lossbook sparse_softmax_loss with k kept logits (top-k, then a logsumexp of k + 1)
  sparsemax_sort    the sparsemax loss with a full sort of each row for the threshold
  sparsemax_topk    the sparsemax loss with the top-k threshold path (starts at 64 and doubles; what
                    lossbook's sparsemax_loss does from lossbook.sparse.TOPK_FROM classes on)

For each C the methods run in alternating rounds (lossbook.lab.benchmark.time_interleaved), and the
ratio printed is the median over rounds of method/softmax: above 1 the method is slower than
softmax. Results go to ``<out-dir>/sparse_softmax_<device>.{txt,json}``.

    python benchmarks/sparse_softmax.py                                   # CPU, C up to 10⁶
    python benchmarks/sparse_softmax.py --device cuda --m 1024
    python benchmarks/sparse_softmax.py --C 1000 --k 5 --m 4 --min-time 0.01 --rounds 2 --out-dir /tmp  # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lossbook.lab.benchmark import Log, machine_line, round_ratios, save_results, time_interleaved
from lossbook.sparse import fenchel_young_terms, sparse_softmax_loss


def _sparsemax_loss(k: int | None):
    """The sparsemax loss with the threshold from a full sort (k None) or the top-k path from k."""
    def loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fenchel_young_terms(z, "sparsemax", k=k).gather(1, y.unsqueeze(1)).mean()
    return loss


def method_names(ks: list[int], sparsemax_max_c: int, C: int) -> list[str]:
    names = ["softmax"] + [f"sparse_softmax_{k}" for k in ks if k < C]
    return names + (["sparsemax_sort", "sparsemax_topk"] if C <= sparsemax_max_c else ["sparsemax_topk"])


def loss_of(method: str):
    if method == "softmax":
        return F.cross_entropy
    if method.startswith("sparse_softmax_"):
        k = int(method.rsplit("_", 1)[1])
        return lambda z, y: sparse_softmax_loss(z, y, k=k)
    if method == "sparsemax_sort":
        return _sparsemax_loss(None)
    if method == "sparsemax_topk":
        return _sparsemax_loss(64)
    raise ValueError(f"sparse_softmax benchmark: unknown method {method!r}")


def make_step(method: str, C: int, m: int, d: int, device, *, scale: float = 3.0, seed: int = 0):
    """A zero-argument function doing one forward and backward pass (and an SGD step when d > 0)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (m,), generator=g).to(device)
    loss_fn = loss_of(method)
    if d > 0:
        h = torch.randn(m, d, generator=g).to(device)
        lin = torch.nn.Linear(d, C, device=device)
        opt = torch.optim.SGD(lin.parameters(), lr=0.01)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(lin(h), y).backward()
            opt.step()

        return step
    z = (scale * torch.randn(m, C, generator=g)).to(device).requires_grad_(True)

    def step() -> None:
        z.grad = None
        loss_fn(z, y).backward()

    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--C", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000], help="numbers of classes")
    p.add_argument("--k", type=int, nargs="+", default=[5, 20, 100], help="sparse-softmax kept logits")
    p.add_argument("--m", type=int, default=128, help="batch size")
    p.add_argument("--d", type=int, default=0, help="hidden size of an nn.Linear in front (0: the loss alone)")
    p.add_argument("--sparsemax-max-c", type=int, default=100_000, help="largest C for the full-sort sparsemax")
    p.add_argument("--min-time", type=float, default=2.0, help="seconds of timing per method and C")
    p.add_argument("--reps", type=int, default=100, help="at most this many timed calls per method and C")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds per C")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lines = Log()
    say = lines.say
    say(f"{machine_line(device)} m={args.m} d={args.d} rounds={args.rounds}")
    rows = []
    for C in args.C:
        names = method_names(args.k, args.sparsemax_max_c, C)
        times = time_interleaved({n: make_step(n, C, args.m, args.d, device) for n in names}, device,
                                 rounds=args.rounds, min_time=args.min_time * len(names), max_reps=args.reps)
        ms = {n: 1e3 * statistics.median(t) for n, t in times.items()}
        ratio = {n: statistics.median(round_ratios(times, n, "softmax")) for n in names}
        rows.append({"C": C, "m": args.m, "d": args.d, "ms": ms, "ratio_vs_softmax": ratio,
                     "round_ratios": {n: round_ratios(times, n, "softmax") for n in names}})
        say(f"\nC = {C}")
        say(f"{'method':<20} {'ms/step':>10} {'method/softmax':>15}")
        for n in names:
            say(f"{n:<20} {ms[n]:>10.2f} {ratio[n]:>15.2f}")
    save_results(args.out_dir, "sparse_softmax", device, lines, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
