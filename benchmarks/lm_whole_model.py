"""Whole-model training speed of the n-gram language model (lossbook.lab.lm) with three output
layers, each step split into the output layer and the rest of the network, timed in the same step:

  softmax       nn.Linear + cross-entropy, SGD                              (O(D·d) per token)
  hierarchical  lossbook.HierarchicalSoftmax, √D clusters of equal count in the training targets,
                sparse gradients, SGD                                       (O(d·√D) per token)
  factored      lossbook.FactoredSphericalLayer("z_loss"), exact SGD        (O(d²) per token)

on two corpora:

  stdlib        word tokens of the Python standard library (lossbook.lab.corpus), the full
                vocabulary (every type; ~22.7k on CPython 3.11)
  zipf          the synthetic Zipf Markov chain (corpus.ZipfMarkovChain) at D = 10⁵ and 10⁶

The network below the output layer is chapter 2's: embeddings of the 3 previous tokens (64 each),
concatenated, then 128 tanh units; batches of 128 tokens; SGD at lr 0.05 everywhere. Embedding
gradients are sparse by default (--dense-embedding: dense, as chapter 2 trains; at D = 10⁶ a dense
embedding gradient makes "the rest" O(D) per step too).

Per (corpus, output) it prints the median over --steps timed steps (after --warmup) of: the whole
step, the output layer's part (its forward, backward and update) and the rest's (the encoder's
forward, backward from ∂L/∂h and update), the output layer's share, and the time to train on
--tokens tokens (and one epoch of the stdlib corpus) extrapolated from the median step. Then the
ratios softmax/factored and hierarchical/factored, of the whole step and of the output layer alone.
--rounds > 1 repeats the three outputs in alternating rounds and reports the median of each; this
machine is shared, so the absolute times are noisy and the ratios are the reading.

    python benchmarks/lm_whole_model.py                         # both corpora, 10 steps each
    python benchmarks/lm_whole_model.py --corpus zipf --D 100000 --steps 50 --rounds 3
    python benchmarks/lm_whole_model.py --threads 1          # a busy machine: one thread for every output
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
from lossbook.lab.corpus import Vocabulary, ZipfMarkovChain, ngram_dataset, python_stdlib_tokens
from lossbook.lab.lm import LMConfig, profile_ngram_lm

OUTPUTS = {"softmax": "softmax", "hierarchical": "hierarchical", "factored": "z_loss"}


def stdlib_data(context: int):
    tokens = python_stdlib_tokens()
    vocab = Vocabulary.build(tokens)
    return ngram_dataset(vocab.encode(tokens), context), len(vocab)


def zipf_data(D: int, length: int, context: int, seed: int = 0):
    ids = ZipfMarkovChain(D, seed=seed).sample(length, seed=seed + 1)
    return ngram_dataset(ids, context), D


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", nargs="+", default=["stdlib", "zipf"], choices=["stdlib", "zipf"])
    p.add_argument("--D", type=int, nargs="+", default=[100_000, 1_000_000], help="Zipf chain vocabularies")
    p.add_argument("--zipf-tokens", type=int, default=200_000, help="length of the Zipf chain sample")
    p.add_argument("--outputs", nargs="+", default=list(OUTPUTS), choices=list(OUTPUTS))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--tokens", type=float, default=1e6, help="the fixed number of tokens the time is given for")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--dense-embedding", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core; 1 on a busy machine)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be ≥ 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"cpu={platform.processor() or platform.machine()} batch={args.batch_size} steps={args.steps} "
          f"warmup={args.warmup} rounds={args.rounds} embedding={'dense' if args.dense_embedding else 'sparse'}")
    cfg0 = LMConfig(context=3, embedding=64, hidden=128, batch_size=args.batch_size, lr=0.05,
                    sparse_embedding=not args.dense_embedding)
    sets = []
    if "stdlib" in args.corpus:
        t0 = time.perf_counter()
        (x, y), V = stdlib_data(cfg0.context)
        print(f"stdlib corpus: {len(y)} training tokens, vocabulary {V} (read in {time.perf_counter() - t0:.0f} s)")
        sets.append(("stdlib", (x, y), V))
    if "zipf" in args.corpus:
        for D in args.D:
            (x, y), V = zipf_data(D, args.zipf_tokens, cfg0.context)
            sets.append((f"zipf D={D}", (x, y), V))
    head = (f"{'corpus':>16} {'output':>12} {'ms/step':>9} {'output ms':>10} {'rest ms':>9} {'out %':>6} "
            f"{f's/{args.tokens:.0e} tok':>11} {'s/epoch':>9}")
    print(head)
    rows = []
    for name, train, V in sets:
        per = {k: [] for k in args.outputs}
        for _ in range(args.rounds):
            for k in args.outputs:
                cfg = LMConfig(**{**cfg0.__dict__, "output": OUTPUTS[k]})
                per[k].append(profile_ngram_lm(train, V, cfg, steps=args.steps, warmup=args.warmup, device=args.device))
        res = {}
        for k, runs in per.items():
            r = {key: statistics.median(run[key] for run in runs) for key in ("ms_per_step", "ms_output", "ms_rest")}
            r["output_share"] = r["ms_output"] / r["ms_per_step"]
            r["s_per_tokens"] = args.tokens / args.batch_size * r["ms_per_step"] / 1e3
            r["s_per_epoch"] = len(train[1]) / args.batch_size * r["ms_per_step"] / 1e3
            res[k] = r
            print(f"{name:>16} {k:>12} {r['ms_per_step']:>9.2f} {r['ms_output']:>10.2f} {r['ms_rest']:>9.2f} "
                  f"{100 * r['output_share']:>5.0f}% {r['s_per_tokens']:>11.1f} {r['s_per_epoch']:>9.1f}")
        ratios = {}
        if "factored" in res:
            for k in ("softmax", "hierarchical"):
                if k in res:
                    ratios[f"{k}/factored whole"] = res[k]["ms_per_step"] / res["factored"]["ms_per_step"]
                    ratios[f"{k}/factored output"] = res[k]["ms_output"] / res["factored"]["ms_output"]
        if ratios:
            print(f"{'':>16} ratios: " + ", ".join(f"{k} {v:.1f}×" for k, v in ratios.items()))
        rows.append({"corpus": name, "vocab": V, "train_tokens": len(train[1]), "results": res, "ratios": ratios})
    if args.out:
        Path(args.out).write_text(json.dumps({"device": args.device, "torch": torch.__version__,
                                              "threads": torch.get_num_threads(), "args": vars(args), "rows": rows},
                                             indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
