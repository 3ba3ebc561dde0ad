r"""The correctness-aware (CA) calibrator (Liu, Wang, Zou, Zou & Zheng, arXiv:2404.13016): a per-input
temperature, predicted from the model's outputs on transformed views of the input, fitted so that the
confidence matches the prediction's *correctness* rather than the label's likelihood.

With ŷ = argmax z the model's prediction, c = 1[ŷ = y] its correctness and p̂ = max softmax(z / T(x))
the calibrated confidence, the CA objective is the class-balanced squared error

.. math::

    \mathcal{L}_{CA} = \frac{\sum_i w_i\,(\hat p_i - c_i)^2}{\sum_i w_i},\qquad
    w_i = \begin{cases} 1 - a & c_i = 1\\ a & c_i = 0\end{cases},\qquad a = \tfrac{1}{N}\textstyle\sum_i c_i,

so the correct and the wrong predictions weigh the same in total (official code:
liuyvchi/Correctness-aware-calibration ``src/cal_metrics/temperature_scaling_CA.py``,
``Temperature_adaptive.set_temperature``: ``MSELoss`` between the top-1 softmax of the scaled logits
and the correctness, weighted as above). Cross-entropy asks instead for p_y → 1 on every example,
which on a narrow error (p_y ≈ 0.4, the prediction another class) can be met by sharpening the
wrong prediction's confidence; the CA objective asks the confidence of a wrong prediction to go to 0.

The temperature comes from the inputs' transformed views (the official code: rotated, grey-scaled
and colour-jittered images): for each view v and each of the top-k classes of the original logits,
the view's softmax probability of that class (:func:`view_features`; official: 3 views, k = 4, so
12 features). T(x) = clamp(w₂ᵀ ReLU(W₁ f(x) + b₁) + b₂, 0.1, 10) with 5 hidden units, as
officially. Because T(x) > 0 the arg-max, hence the accuracy, is kept.

Differences from the official fit, stated: the official code runs Adam (rate 10⁻⁴, batches of
1000, 10 epochs) on half of ImageNet's validation set from PyTorch's default initialisation; on a
few hundred validation examples that is a handful of steps, so :meth:`CorrectnessAwareScaling.fit`
runs full-batch Adam in float64 (``steps`` at rate ``lr``) and starts from T(x) = 1 (the output
layer's weights 0, its bias 1), the uncalibrated model, where the clamp has a gradient. With
``objective="nll"`` the same calibrator is fitted by cross-entropy instead: the control the paper
argues against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_logits, describe
from ..registry import register_method
from .calibrators import _fit_inputs

__all__ = ["CorrectnessAwareScaling", "correctness_aware_loss", "view_features"]

OBJECTIVES = ("ca", "nll")


def correctness_aware_loss(logits: Tensor, correct: Tensor, *, balanced: bool = True) -> Tensor:
    """The CA objective: the (class-balanced) mean squared gap between the top-1 confidence of
    ``softmax(logits)`` (N, C) and ``correct`` (N,), the 0/1 correctness of each prediction.

    With ``balanced`` (the official weighting) correct predictions weigh 1 − a and wrong ones a,
    a the fraction correct, so both groups count equally; when every prediction is correct or
    every one is wrong the weights vanish and the plain mean is returned. Differentiable in ``logits``.
    """
    check_logits("correctness_aware_loss", logits)
    if not isinstance(correct, Tensor) or correct.shape != logits.shape[:1]:
        raise ValueError(f"correctness_aware_loss: correct must be a tensor of shape ({logits.shape[0]},) holding "
                         f"0/1 (or bool) correctness; got {describe(correct)}. Use (logits.argmax(1) == labels).")
    c = correct.to(logits.dtype)
    if bool(((c != 0) & (c != 1)).any()):
        raise ValueError("correctness_aware_loss: correct must hold 0/1 (or bool) values; "
                         "use (logits.argmax(1) == labels).")
    confidence = torch.softmax(logits, dim=1).amax(dim=1)
    sq = (confidence - c) ** 2
    if not balanced:
        return sq.mean()
    a = c.mean()
    w = torch.where(c > 0, 1 - a, a)
    total = w.sum()
    return sq.mean() if float(total) == 0 else (w * sq).sum() / total


def _views(name: str, view_logits, n: int, c: int) -> list[Tensor]:
    views = list(view_logits) if isinstance(view_logits, (list, tuple)) else None
    if isinstance(view_logits, Tensor) and view_logits.dim() == 3:
        views = list(view_logits)
    if not views or not all(isinstance(v, Tensor) and v.is_floating_point() and tuple(v.shape) == (n, c)
                            for v in views):
        got = [describe(v) for v in views] if views else describe(view_logits)
        raise ValueError(f"{name}: view_logits must be a non-empty list of floating tensors (N, C) = ({n}, {c}), "
                         f"the model's logits on each transformed view of the same inputs; got {got}.")
    return views


def view_features(logits: Tensor, view_logits: Sequence[Tensor] | Tensor, *, k: int = 4) -> Tensor:
    """The CA calibrator's input: for each transformed view (a list of (N, C) logits, or a (V, N, C)
    tensor) the view's softmax probabilities of the top-``k`` classes of ``logits`` (N, C), in the
    order of ``logits``' ranking; shape (N, V·k). k is capped at C."""
    check_logits("view_features", logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"view_features: k must be an int ≥ 1 (the official code uses 4); got {k!r}.")
    n, c = logits.shape
    views = _views("view_features", view_logits, n, c)
    top = logits.topk(min(k, c), dim=1).indices
    return torch.cat([torch.softmax(v.to(logits), dim=1).gather(1, top) for v in views], dim=1)


@register_method(kind="calibrator", family="calibration", paper="liu2024correctness")
class CorrectnessAwareScaling(nn.Module):
    """Correctness-aware calibration (Liu et al. 2024): z / T(x), T fitted by the CA objective.

    T(x) is a per-input temperature read from the model's outputs on transformed views of x
    (:func:`view_features`), fitted by :func:`correctness_aware_loss`.

    ``CorrectnessAwareScaling.fit(val_logits, val_view_logits, val_labels)`` fits it on validation
    data; calling it with ``(logits, view_logits)`` returns calibrated logits (same dtype and device).
    ``objective="nll"`` fits the same map by cross-entropy (the paper's point of comparison).
    """

    def __init__(self, num_features: int, *, hidden: int = 5, k: int = 4,
                 temperature_range: tuple[float, float] = (0.1, 10.0)) -> None:
        super().__init__()
        for arg, value in (("num_features", num_features), ("hidden", hidden), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CorrectnessAwareScaling: {arg} must be an int ≥ 1; got {value!r}.")
        low, high = temperature_range
        if not 0 < low < 1 < high:
            raise ValueError("CorrectnessAwareScaling: temperature_range must satisfy 0 < low < 1 < high "
                             f"(T = 1 is the start; official (0.1, 10)); got {temperature_range!r}.")
        self.k, self.temperature_range = k, (float(low), float(high))
        self.embed = nn.Linear(num_features, hidden).double()
        self.out = nn.Linear(hidden, 1).double()
        with torch.no_grad():  # start at T(x) = 1: the uncalibrated model
            self.out.weight.zero_()
            self.out.bias.fill_(1.0)
        self.requires_grad_(False)

    @property
    def num_features(self) -> int:
        return self.embed.in_features

    def temperatures(self, logits: Tensor, view_logits) -> Tensor:
        """T(x) for each row of ``logits`` (N,), from :func:`view_features` of its views."""
        name = type(self).__name__
        check_logits(name, logits)
        feats = view_features(logits.double(), view_logits, k=self.k)
        if feats.shape[1] != self.num_features:
            raise ValueError(f"{name}: was built for {self.num_features} features (views × k); got "
                             f"{feats.shape[1]} from {len(_views(name, view_logits, *logits.shape))} views with "
                             f"k = {self.k} on {logits.shape[1]} classes. Pass the views it was fitted with.")
        return self._temperature(feats.to(self.out.weight))

    def _temperature(self, feats: Tensor) -> Tensor:
        return self.out(torch.relu(self.embed(feats))).squeeze(1).clamp(*self.temperature_range)

    def forward(self, logits: Tensor, view_logits) -> Tensor:
        return logits / self.temperatures(logits, view_logits).to(logits).unsqueeze(1)

    @classmethod
    def fit(cls, logits, view_logits, labels, *, objective: str = "ca", k: int = 4, hidden: int = 5,
            steps: int = 1000, lr: float = 0.01, seed: int = 0) -> CorrectnessAwareScaling:
        """The calibrator fitted on validation ``(logits, view_logits, labels)`` by full-batch Adam in
        float64 (``steps`` at rate ``lr``; the hidden layer's initialisation drawn from ``seed``).

        ``objective="ca"``: :func:`correctness_aware_loss` with the correctness of the uncalibrated
        prediction; ``"nll"``: cross-entropy of the calibrated logits (the CE-trained control).
        """
        name = f"{cls.__name__}.fit"
        if objective not in OBJECTIVES:
            raise ValueError(f"{name}: objective must be one of {OBJECTIVES}; got {objective!r}.")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0 or not lr > 0:
            raise ValueError(f"{name}: steps must be an int ≥ 0 and lr > 0; got steps={steps!r}, lr={lr!r}.")
        z, y = _fit_inputs(name, logits, labels)
        views = [v.detach().to("cpu", torch.float64) for v in _views(name, view_logits, *z.shape)]
        feats = view_features(z, views, k=k)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = cls(feats.shape[1], hidden=hidden, k=k)
        correct = z.argmax(1) == y
        params = list(out.parameters())
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                cal = z / out._temperature(feats).unsqueeze(1)
                loss = correctness_aware_loss(cal, correct) if objective == "ca" else F.cross_entropy(cal, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        out.requires_grad_(False)
        return out

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, hidden={self.embed.out_features}, k={self.k}"
