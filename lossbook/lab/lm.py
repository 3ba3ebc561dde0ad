"""A small n-gram language model whose output layer is either a softmax (nn.Linear + cross-entropy,
any optimiser) or a :class:`lossbook.FactoredSphericalLayer` (exact SGD, O(d²) per example).

Used by the spherical chapter to compare the losses' ranking quality (top-k accuracy of the next
token) on the same network, data and budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..spherical.layer import FactoredSphericalLayer
from .train import get_device, progress_enabled, set_seed

__all__ = ["NgramEncoder", "LMConfig", "train_ngram_lm", "topk_accuracy_curve"]


class NgramEncoder(nn.Module):
    """Context of ``context`` token ids → hidden state: embeddings, concatenated, then an MLP."""

    def __init__(self, vocab_size: int, context: int, *, embedding: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding)
        self.mlp = nn.Sequential(nn.Linear(context * embedding, hidden), nn.Tanh())

    def forward(self, ids: Tensor) -> Tensor:
        return self.mlp(self.embed(ids).flatten(1))


@dataclass(frozen=True)
class LMConfig:
    output: str = "softmax"  # "softmax" or a spherical loss name for the factored layer
    loss_kwargs: tuple = ()  # e.g. (("a_z", 1.0), ("b", 0.0)) for the Z-loss
    context: int = 3
    embedding: int = 64
    hidden: int = 128
    batch_size: int = 128
    epochs: int = 1
    lr: float = 0.05  # SGD for the network; the factored layer uses the same lr (plain SGD, exact)
    max_steps: int | None = None


def topk_accuracy_curve(top_idx: Tensor, target: Tensor, ks) -> dict[int, float]:
    """Top-k accuracy for each k from the (N, k_max) indices of the highest scores."""
    hit_rank = (top_idx == target[:, None]).float()
    cum = hit_rank.cumsum(dim=1)
    return {int(k): float(cum[:, k - 1].mean()) for k in ks}


def train_ngram_lm(train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor] | dict[str, tuple[Tensor, Tensor]],
                   vocab_size: int, cfg: LMConfig, *, seed: int = 0, ks=(1, 5, 20, 100), device="auto",
                   progress: bool | None = None, raise_on_divergence: bool = True) -> dict:
    """Train the n-gram model with ``cfg.output`` and return test top-k accuracies and timings.

    ``test`` is one evaluation set ``(contexts, targets)``, whose accuracies come back as
    ``top{k}``, or a dict of named sets, e.g. ``{"val": ..., "test": ...}``, whose accuracies come
    back as ``{name}_top{k}``: one training run, read on a validation and a test split. The result
    also has ``steps``, ``ms_per_step`` (training steps only, evaluation excluded) and ``diverged``.

    Both kinds of output layer are trained by plain SGD at ``cfg.lr`` together with the network
    below, so the comparison isolates the loss (and the factored layer's exactness makes its
    training identical to what dense SGD on the same loss would do).

    A non-finite loss raises ``FloatingPointError``, or with ``raise_on_divergence=False`` ends
    training and reports ``diverged=True`` with zero accuracies (for learning-rate searches).
    """
    from tqdm.auto import tqdm

    if isinstance(test, dict):
        if not test:
            raise ValueError("train_ngram_lm: test must be (contexts, targets) or a non-empty dict of named sets, "
                             "e.g. {'val': val, 'test': test}.")
        prefixes, sets = [f"{name}_" for name in test], list(test.values())
    else:
        prefixes, sets = [""], [test]
    dev = get_device(device)
    set_seed(seed)
    enc = NgramEncoder(vocab_size, cfg.context, embedding=cfg.embedding, hidden=cfg.hidden).to(dev)
    if cfg.output == "softmax":
        head = nn.Linear(cfg.hidden, vocab_size).to(dev)
        params = [*enc.parameters(), *head.parameters()]
    else:
        head = FactoredSphericalLayer(cfg.hidden, vocab_size, loss=cfg.output, loss_kwargs=dict(cfg.loss_kwargs),
                                      device=dev, generator=torch.Generator().manual_seed(seed))
        params = list(enc.parameters())
    opt = torch.optim.SGD(params, lr=cfg.lr)
    x, y = train[0].to(dev), train[1].to(dev)
    g = torch.Generator().manual_seed(seed)
    steps, t_train = 0, 0.0
    total = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    bar = tqdm(total=total, desc=cfg.output, disable=not progress_enabled(progress), leave=False)
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=g).to(dev)
        for i in range(0, len(x), cfg.batch_size):
            if steps >= total:
                break
            idx = order[i : i + cfg.batch_size]
            t0 = time.perf_counter()
            h = enc(x[idx])
            if cfg.output == "softmax":
                loss = nn.functional.cross_entropy(head(h), y[idx])
            else:
                loss = head(h, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.output != "softmax":
                head.step(cfg.lr)
            t_train += time.perf_counter() - t0
            steps += 1
            bar.update()
            if not math.isfinite(float(loss.detach())):
                if raise_on_divergence:
                    raise FloatingPointError(
                        f"train_ngram_lm: the loss became {float(loss.detach())} at step {steps}; lower lr "
                        f"(now {cfg.lr})."
                    )
                bar.close()
                return {**{f"{prefix}top{k}": 0.0 for prefix in prefixes for k in ks}, "steps": steps,
                        "ms_per_step": float("nan"), "diverged": True}
    bar.close()
    enc.eval()
    k_max = max(ks)
    out = {}
    with torch.no_grad():
        for prefix, (contexts, targets) in zip(prefixes, sets):
            tops = []
            for i in range(0, len(contexts), 2048):
                h = enc(contexts[i : i + 2048].to(dev))
                if cfg.output == "softmax":
                    tops.append(head(h).topk(k_max, dim=1).indices)
                else:
                    tops.append(head.topk(h, k_max)[1])
            top = torch.cat(tops).cpu()
            out.update({f"{prefix}top{k}": v for k, v in topk_accuracy_curve(top, targets.cpu(), ks).items()})
    out.update({"steps": steps, "ms_per_step": 1e3 * t_train / max(steps, 1), "diverged": False})
    return out
