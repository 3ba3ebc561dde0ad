"""A small n-gram language model whose output layer is a softmax (nn.Linear + cross-entropy,
any optimiser), a :class:`lossbook.FactoredSphericalLayer` (exact SGD, O(d²) per example) or a
:class:`lossbook.HierarchicalSoftmax` (two levels, classes clustered by their training counts).

Used by the spherical chapter to compare the losses' ranking quality (top-k accuracy of the next
token) on the same network, data and budget, and (:func:`profile_ngram_lm`) the time a whole
training step takes with each output layer, split into the output layer and the rest.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..softmax.hierarchical import HierarchicalSoftmax
from ..spherical.layer import FactoredSphericalLayer
from .train import get_device, progress_enabled, set_seed

__all__ = ["NgramEncoder", "LMConfig", "train_ngram_lm", "topk_accuracy_curve", "profile_ngram_lm"]


class NgramEncoder(nn.Module):
    """Context of ``context`` token ids → hidden state: embeddings, concatenated, then an MLP."""

    def __init__(self, vocab_size: int, context: int, *, embedding: int = 64, hidden: int = 128,
                 sparse: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding, sparse=sparse)
        self.mlp = nn.Sequential(nn.Linear(context * embedding, hidden), nn.Tanh())

    def forward(self, ids: Tensor) -> Tensor:
        return self.mlp(self.embed(ids).flatten(1))


@dataclass(frozen=True)
class LMConfig:
    output: str = "softmax"  # "softmax", "hierarchical", or a spherical loss name for the factored layer
    loss_kwargs: tuple = ()  # e.g. (("a_z", 1.0), ("b", 0.0)) for the Z-loss
    context: int = 3
    embedding: int = 64
    hidden: int = 128
    batch_size: int = 128
    epochs: int = 1
    lr: float = 0.05  # SGD for the network; the factored layer uses the same lr (plain SGD, exact)
    max_steps: int | None = None
    sparse_embedding: bool = False  # sparse embedding gradients (SGD touches only the batch's rows)


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

    ``cfg.output = "hierarchical"`` uses :class:`lossbook.HierarchicalSoftmax` with √V clusters of
    about equal count in the training targets (sparse gradients). All output layers are trained by
    plain SGD at ``cfg.lr`` together with the network below, so the comparison isolates the loss
    (and the factored layer's exactness makes its training identical to what dense SGD on the same
    loss would do).

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
    enc, head = _build_model(train[1], vocab_size, cfg, dev, seed)
    params = list(enc.parameters()) + ([] if isinstance(head, FactoredSphericalLayer) else list(head.parameters()))
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
            loss = _head_loss(head, h, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if isinstance(head, FactoredSphericalLayer):
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
                if isinstance(head, nn.Linear):
                    tops.append(head(h).topk(k_max, dim=1).indices)
                else:
                    tops.append(head.topk(h, k_max)[1])
            top = torch.cat(tops).cpu()
            out.update({f"{prefix}top{k}": v for k, v in topk_accuracy_curve(top, targets.cpu(), ks).items()})
    out.update({"steps": steps, "ms_per_step": 1e3 * t_train / max(steps, 1), "diverged": False})
    return out


def _build_model(y_train: Tensor, vocab_size: int, cfg: LMConfig, dev, seed: int) -> tuple[NgramEncoder, nn.Module]:
    """The encoder and the output layer ``cfg.output`` asks for (seeded; on ``dev``)."""
    set_seed(seed)
    enc = NgramEncoder(vocab_size, cfg.context, embedding=cfg.embedding, hidden=cfg.hidden,
                       sparse=cfg.sparse_embedding).to(dev)
    if cfg.output == "softmax":
        head = nn.Linear(cfg.hidden, vocab_size).to(dev)
    elif cfg.output == "hierarchical":
        counts = torch.bincount(y_train.cpu(), minlength=vocab_size).to(torch.float64)
        head = HierarchicalSoftmax(cfg.hidden, vocab_size, class_counts=counts, device=dev,
                                   generator=torch.Generator().manual_seed(seed))
    else:
        head = FactoredSphericalLayer(cfg.hidden, vocab_size, loss=cfg.output, loss_kwargs=dict(cfg.loss_kwargs),
                                      device=dev, generator=torch.Generator().manual_seed(seed))
    return enc, head


def _head_loss(head: nn.Module, h: Tensor, y: Tensor) -> Tensor:
    if isinstance(head, nn.Linear):
        return nn.functional.cross_entropy(head(h), y)
    return head(h, y)


def profile_ngram_lm(train: tuple[Tensor, Tensor], vocab_size: int, cfg: LMConfig, *, steps: int = 20,
                     warmup: int = 2, seed: int = 0, device="auto") -> dict:
    """Time ``steps`` training steps of the n-gram model (after ``warmup`` untimed ones), each split
    into its two parts, both timed in every step:

    * ``output``: the output layer's forward, backward and update (SGD on its parameters, or the
      factored layer's exact ``step``), fed the encoder's hidden states detached;
    * ``rest``: the encoder's forward, its backward from the output layer's ∂L/∂h, and its SGD update.

    The split computes exactly what :func:`train_ngram_lm`'s step computes (the encoder's
    backward receives the same ∂L/∂h). Returns milliseconds per step, medians over the timed steps:
    ``ms_per_step`` (the whole step), ``ms_output``, ``ms_rest``, with ``output_share`` =
    ms_output / ms_per_step, ``steps``, ``tokens_per_s`` (predicted tokens: ``batch_size`` per
    step) and ``loss`` (the last step's). Batches are drawn in order from a seeded permutation of
    ``train``, cycling when it runs out.
    """
    import statistics

    for arg, v, low in (("steps", steps, 1), ("warmup", warmup, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"profile_ngram_lm: {arg} must be an int ≥ {low}; got {v!r}.")
    dev = get_device(device)
    enc, head = _build_model(train[1], vocab_size, cfg, dev, seed)
    factored = isinstance(head, FactoredSphericalLayer)
    opt_enc = torch.optim.SGD(enc.parameters(), lr=cfg.lr)
    opt_head = None if factored else torch.optim.SGD(head.parameters(), lr=cfg.lr)
    x, y = train[0].to(dev), train[1].to(dev)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(dev)
    sync = torch.cuda.synchronize if torch.device(dev).type == "cuda" else (lambda: None)
    whole, out_t, rest_t = [], [], []
    loss = torch.zeros(())
    for i in range(warmup + steps):
        start = (i * cfg.batch_size) % max(1, len(x) - cfg.batch_size + 1)
        idx = order[start : start + cfg.batch_size]
        xb, yb = x[idx], y[idx]
        sync()
        t0 = time.perf_counter()
        h = enc(xb)  # rest: forward
        sync()
        t1 = time.perf_counter()
        hd = h.detach().requires_grad_(True)  # output layer: forward, backward, update
        loss = _head_loss(head, hd, yb)
        if opt_head is not None:
            opt_head.zero_grad(set_to_none=True)
        loss.backward()
        if factored:
            head.step(cfg.lr)
        else:
            opt_head.step()
        sync()
        t2 = time.perf_counter()
        opt_enc.zero_grad(set_to_none=True)  # rest: backward from ∂L/∂h, update
        h.backward(hd.grad)
        opt_enc.step()
        sync()
        t3 = time.perf_counter()
        if i >= warmup:
            whole.append(t3 - t0)
            out_t.append(t2 - t1)
            rest_t.append((t1 - t0) + (t3 - t2))
    ms = 1e3 * statistics.median(whole)
    ms_out, ms_rest = 1e3 * statistics.median(out_t), 1e3 * statistics.median(rest_t)
    return {"ms_per_step": ms, "ms_output": ms_out, "ms_rest": ms_rest, "output_share": ms_out / ms,
            "steps": steps, "tokens_per_s": cfg.batch_size / (ms / 1e3), "loss": float(loss.detach())}
