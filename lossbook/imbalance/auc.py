r"""AUC maximisation: the AUC-margin (AUC-M) min-max loss with its optimiser PESG, and the AUC square loss.

Yuan et al. (2021), "Large-scale robust deep AUC maximization". Scores h ∈ [0, 1] (a sigmoid of the
model's output), labels y ∈ {0, 1}, p the share of positives. The AUC square loss is the mean over
positive–negative pairs of (m − h(x⁺) + h(x⁻))². Its min-max reformulation with the margin
replaced by a squared-hinge (AUC-M) is

.. math::

    \min_{w,a,b}\max_{\alpha\ge0}\ \mathbb{E}\bigl[(1-p)(h-a)^2\,\mathbb{1}_{y=1} + p(h-b)^2\,\mathbb{1}_{y=0}
    + 2\alpha\bigl(p(1-p)m + p\,h\,\mathbb{1}_{y=0} - (1-p)\,h\,\mathbb{1}_{y=1}\bigr) - p(1-p)\alpha^2\bigr]

(a, b track the positives' and negatives' mean scores, α ≥ 0 is the dual variable of the margin
constraint). :class:`AUCMLoss` holds a, b, α as parameters; :class:`PESG` descends on the model
and (a, b) and ascends on α (projected to α ≥ 0), with the epoch-level proximal term
("epoch_decay") of the paper. LibAUC's 2024 change to the margin term shifted AUC-M's *value* by a
constant and left its gradients alone; the parity test compares gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import check_number, describe
from ..registry import register_method

__all__ = ["PESG", "AUCMLoss", "auc_square_loss"]


def _binary(name: str, scores: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(scores, Tensor) or not scores.is_floating_point():
        raise TypeError(f"{name}: scores must be a floating tensor of shape (N,) or (N, 1), e.g. "
                        f"torch.sigmoid(model(x)); got {describe(scores) if isinstance(scores, Tensor) else type(scores).__name__}.")
    if scores.dim() == 2 and scores.shape[1] == 1:
        scores = scores.squeeze(1)
    if scores.dim() != 1:
        raise ValueError(f"{name}: scores must have shape (N,) or (N, 1); got {describe(scores)}.")
    if not isinstance(target, Tensor) or target.reshape(-1).shape != scores.shape:
        raise ValueError(f"{name}: target must hold one 0/1 label per score, shape ({len(scores)},); got "
                         f"{describe(target) if isinstance(target, Tensor) else type(target).__name__}.")
    t = target.reshape(-1)
    if t.numel() and not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(f"{name}: target must hold 0/1 labels (1 = positive); got other values. "
                         "For ±1 labels use (target > 0).long().")
    return scores, t.to(scores.dtype)


@register_method(kind="stateful loss", family="imbalance", paper="yuan2021robust")
def auc_square_loss(scores: Tensor, target: Tensor, *, margin: float = 1.0) -> Tensor:
    r"""AUC square loss: the mean over positive–negative pairs of (m − h(x⁺) + h(x⁻))², ``scores`` h
    (N,) and 0/1 ``target``. Computed from the two classes' first and second moments (O(N), the
    same value as the pairwise sum). A batch without a positive or a negative gives 0 attached to the
    graph."""
    name = "auc_square_loss"
    h, y = _binary(name, scores, target)
    m = check_number(name, "margin", margin, low=0.0)
    n_pos, n_neg = y.sum(), (1 - y).sum()
    mu_p = (y * h).sum() / n_pos.clamp_min(1)
    mu_n = ((1 - y) * h).sum() / n_neg.clamp_min(1)
    var_p = (y * (h - mu_p).square()).sum() / n_pos.clamp_min(1)
    var_n = ((1 - y) * (h - mu_n).square()).sum() / n_neg.clamp_min(1)
    value = (m - mu_p + mu_n).square() + var_p + var_n
    return torch.where((n_pos > 0) & (n_neg > 0), value, h.sum() * 0.0)


@register_method(kind="stateful loss", family="imbalance", paper="yuan2021robust")
class AUCMLoss(nn.Module):
    r"""AUC-margin loss (AUC-M) of Yuan et al. (2021), the min-max objective with its variables a, b
    (primal) and α (dual, ≥ 0) as parameters of this Module.

    ``forward(scores, target)``: ``scores`` h ∈ [0, 1] (N,) or (N, 1), 0/1 ``target``. ``margin`` m
    (the paper's 1.0); ``imratio`` p, the share of positives in the training set (None: each batch's
    share, as LibAUC does when it is not given). Train with :class:`PESG`, which ascends on ``alpha``.
    The value is the batch mean of F(w, a, b, α; z) in the formula of :mod:`lossbook.imbalance.auc`.
    """

    def __init__(self, margin: float = 1.0, imratio: float | None = None) -> None:
        super().__init__()
        self.margin = check_number("AUCMLoss", "margin", margin, low=0.0)
        self.imratio = None if imratio is None else check_number("AUCMLoss", "imratio", imratio, low=0.0,
                                                                 high=1.0, low_open=True, high_open=True)
        self.a = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.zeros(()))
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        h, y = _binary("AUCMLoss", scores, target)
        if h.numel() == 0:
            return h.sum() * 0.0 + 0.0 * (self.a + self.b + self.alpha)
        p = y.mean() if self.imratio is None else torch.tensor(self.imratio, dtype=h.dtype, device=h.device)
        a, b, alpha = (v.to(h.dtype) for v in (self.a, self.b, self.alpha))
        per = ((1 - p) * (h - a).square() * y + p * (h - b).square() * (1 - y)
               + 2 * alpha * (p * (1 - p) * self.margin + p * h * (1 - y) - (1 - p) * h * y)
               - p * (1 - p) * alpha.square())
        return per.mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, imratio={self.imratio}"


@register_method(kind="building block", family="imbalance", paper="yuan2021robust")
class PESG(torch.optim.Optimizer):
    r"""Proximal epoch stochastic gradient (PESG) for AUC-M (Yuan et al., 2021): gradient descent on
    the model's parameters and the loss's a, b, gradient *ascent* on α projected onto α ≥ 0.

    ``PESG(model.parameters(), loss, lr=0.1, ...)`` with ``loss`` an :class:`AUCMLoss`. Per primal
    parameter w: d = clip(∇w, ±``clip_value``) + ``epoch_decay``·(w − w_ref) + ``weight_decay``·w,
    optional momentum (buffer ← (1 − β)·buffer + β·d, as LibAUC), then w ← w − lr·d; α ← max(0, α + lr·∇α).
    w_ref is the reference point of the proximal term: the parameters at construction, then, at each
    :meth:`update_regularizer` (call it at the end of each stage, e.g. epoch), the average of the
    iterates since the last call; ``decay_factor`` there divides the learning rate.
    """

    def __init__(self, params, loss: AUCMLoss, *, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 1e-5,
                 epoch_decay: float = 0.0, clip_value: float = 1.0) -> None:
        if not isinstance(loss, AUCMLoss):
            raise TypeError(f"PESG: loss must be the AUCMLoss being trained (it holds a, b and alpha); got "
                            f"{type(loss).__name__}.")
        lr = check_number("PESG", "lr", lr, low=0.0, low_open=True)
        momentum = check_number("PESG", "momentum", momentum, low=0.0, high=1.0, high_open=True)
        weight_decay = check_number("PESG", "weight_decay", weight_decay, low=0.0)
        epoch_decay = check_number("PESG", "epoch_decay", epoch_decay, low=0.0)
        clip_value = check_number("PESG", "clip_value", clip_value, low=0.0, low_open=True)
        primal = [p for p in params if p is not loss.alpha] + [loss.a, loss.b]
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "epoch_decay": epoch_decay,
                    "clip_value": clip_value}
        super().__init__([{"params": primal, "dual": False}, {"params": [loss.alpha], "dual": True}], defaults)
        self._snapshot()

    def _snapshot(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["ref"] = p.detach().clone()
                state["sum"] = torch.zeros_like(p)
                state["count"] = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if group["dual"]:
                    p.add_(p.grad, alpha=group["lr"]).clamp_(min=0.0)
                else:
                    d = p.grad.clamp(-group["clip_value"], group["clip_value"])
                    if group["epoch_decay"] > 0:
                        d = d + group["epoch_decay"] * (p - state["ref"])
                    if group["weight_decay"] > 0:
                        d = d + group["weight_decay"] * p
                    if group["momentum"] > 0:
                        if "buffer" not in state:
                            state["buffer"] = d.clone()
                        else:
                            state["buffer"].mul_(1 - group["momentum"]).add_(d, alpha=group["momentum"])
                        d = state["buffer"]
                    p.sub_(d, alpha=group["lr"])
                state["sum"].add_(p)
                state["count"] += 1
        return loss

    @torch.no_grad()
    def update_regularizer(self, decay_factor: float | None = None) -> None:
        """Move the proximal reference point to the average of the iterates since the last call, and
        divide the learning rate by ``decay_factor`` when given."""
        if decay_factor is not None:
            decay_factor = check_number("PESG.update_regularizer", "decay_factor", decay_factor, low=0.0, low_open=True)
        for group in self.param_groups:
            if decay_factor is not None:
                group["lr"] = group["lr"] / decay_factor
            for p in group["params"]:
                state = self.state[p]
                if state["count"]:
                    state["ref"] = state["sum"] / state["count"]
                state["sum"] = torch.zeros_like(p)
                state["count"] = 0
