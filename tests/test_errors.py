"""Every user error, pinned by type and message (OpInfo ``ErrorInput`` style).

Each row is ``(callable, args, kwargs, exception type, regex on the message)``. The generic rows
run against every registered loss, whose messages must start with the function's name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

import lossbook
import lossbook.functional as LF
from lossbook.softmax import comp_sum_minimizer

N, C = 6, 5
LOSSES = lossbook.list_losses()


@dataclass
class ErrorInput:
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict = field(default_factory=dict)
    exc: type[Exception] = ValueError
    match: str = ""


def _x(dtype=torch.float32):
    return torch.randn(N, C, generator=torch.Generator().manual_seed(0)).to(dtype)


def _y():
    return torch.tensor([0, 1, 2, 3, 4, 0])


def _y_out_of_range(value):
    y = _y()
    y[2] = value
    return y


# rows that apply to every loss taking (logits, index target): (id, args, kwargs, exc, regex)
GENERIC = [
    ("logits-list", ([[0.1] * C] * N, _y()), {}, TypeError,
     r"logits must be a torch\.Tensor of shape \(N, C\); got list\. Wrap it with torch\.as_tensor"),
    ("logits-int", (torch.ones(N, C, dtype=torch.int64), _y()), {}, TypeError,
     r"logits must be a floating tensor; got int64\. Use logits\.float\(\)"),
    ("logits-1d", (torch.randn(C), torch.tensor([1])), {}, ValueError,
     r"logits must have shape \(N, C\); got \(5,\)\. Did you mean logits\.unsqueeze\(0\)\?"),
    ("logits-3d", (torch.randn(2, 3, C), _y()), {}, ValueError,
     r"got \(2, 3, 5\)\. Did you mean logits\.reshape\(-1, logits\.shape\[-1\]\)\?"),
    ("target-list", (_x(), [0, 1, 2, 3, 4, 0]), {}, TypeError,
     r"target must be a torch\.Tensor; got list\. Wrap it with torch\.as_tensor\(y, dtype=torch\.long\)"),
    ("target-float-N1", (_x(), _y().float()[:, None]), {}, ValueError,
     r"got float32 of shape \(6, 1\)\. Did you mean target\.squeeze\(1\)\.long\(\)\?"),
    ("target-float-N", (_x(), _y().float()), {}, ValueError,
     (r"probability targets must have the logits' shape \(6, 5\); got float32 of shape \(6,\)\. "
     r"Did you mean target\.long\(\)\?")),
    ("target-int32", (_x(), _y().int()), {}, TypeError,
     r"target must be int64 class indices; got int32\. Use target\.long\(\)"),
    ("target-bool", (_x(), _y() > 1), {}, TypeError, r"target must be int64 class indices; got bool"),
    ("target-long-N1", (_x(), _y()[:, None]), {}, ValueError,
     r"target must be int64 class indices of shape \(6,\) .* got shape \(6, 1\)\. Did you mean target\.squeeze\(1\)\?"),
    ("target-too-long", (_x(), torch.zeros(N + 1, dtype=torch.long)), {}, ValueError,
     r"of shape \(6,\) to match logits of shape \(6, 5\); got shape \(7,\)"),
    ("prob-target-shape", (_x(), torch.full((N, C + 1), 1.0 / (C + 1))), {}, ValueError,
     r"probability targets must have the logits' shape \(6, 5\); got float32 of shape \(6, 6\)\.$"),
    ("prob-target-dtype", (_x(), torch.full((N, C), 1.0 / C, dtype=torch.float64)), {}, TypeError,
     r"probability targets must have the logits' dtype float32; got float64\. Use target\.to\(logits\.dtype\)"),
    ("index-too-big", (_x(), _y_out_of_range(9)), {}, ValueError,
     r"target holds class index 9, outside \[0, 5\) for 5 classes\. .*pass ignore_index=9 to skip such rows"),
    ("index-equals-C", (_x(), _y_out_of_range(C)), {}, ValueError,
     r"target holds class index 5, outside \[0, 5\).*ignore_index=5"),
    ("index-negative", (_x(), _y_out_of_range(-1)), {}, ValueError,
     r"class index -1, outside \[0, 5\).*ignore_index=-1"),
    ("index-vs-ignore", (_x(), _y_out_of_range(-100)), {"ignore_index": -1}, ValueError, r"class index -100"),
    ("reduction", (_x(), _y()), {"reduction": "avg"}, ValueError,
     r"reduction must be one of \('none', 'mean', 'sum'\); got 'avg'"),
    ("reduction-None", (_x(), _y()), {"reduction": None}, ValueError, r"reduction must be one of .*got None"),
    ("smoothing-high", (_x(), _y()), {"label_smoothing": 1.5}, ValueError,
     r"label_smoothing must lie in \[0, 1\]; got 1\.5"),
    ("smoothing-negative", (_x(), _y()), {"label_smoothing": -0.1}, ValueError,
     r"label_smoothing must lie in \[0, 1\]; got -0\.1"),
    ("smoothing-nan", (_x(), _y()), {"label_smoothing": float("nan")}, ValueError, r"label_smoothing must lie in"),
    ("smoothing-str", (_x(), _y()), {"label_smoothing": "0.1"}, TypeError,
     r"label_smoothing must be a real number; got str"),
    ("weight-shape", (_x(), _y()), {"weight": torch.ones(C + 1)}, ValueError,
     r"weight must have shape \(5,\), one weight per class; got \(6,\)"),
    ("weight-2d", (_x(), _y()), {"weight": torch.ones(1, C)}, ValueError, r"weight must have shape \(5,\).*got \(1, 5\)"),
    ("weight-dtype", (_x(), _y()), {"weight": torch.ones(C, dtype=torch.int64)}, TypeError,
     r"weight must be a floating tensor of shape \(5,\), one weight per class; got int64"),
    ("weight-list", (_x(), _y()), {"weight": [1.0] * C}, TypeError, r"weight must be a floating tensor.*got list"),
]

# what the float-target rows expect from a loss that takes only class indices (no prob_target)
INDEX_ONLY = {
    "target-float-N1": (TypeError, (r"target must be int64 class indices of shape \(6,\); got float32 of shape "
                                    r"\(6, 1\)\. Did you mean target\.squeeze\(1\)\.long\(\)\?$")),
    "target-float-N": (TypeError, (r"target must be int64 class indices of shape \(6,\); got float32 of shape "
                                   r"\(6,\)\. Did you mean target\.long\(\)\?$")),
}
# and rows only such a loss has: (id, args, kwargs, exc, regex)
INDEX_ONLY_EXTRA = [
    ("target-prob-rows", (_x(), torch.full((N, C), 1.0 / C)), {}, TypeError,
     (r"target must be int64 class indices of shape \(6,\); got float32 of shape \(6, 5\)\. "
      r"This loss takes no probability targets; for one-hot rows use target\.argmax\(1\)\.$")),
]

# rows for one loss each: (id, callable, args, kwargs, exc, regex)
SPECIFIC = [
    ("comp_sum-tau-negative", LF.comp_sum_loss, (_x(), _y()), {"tau": -0.5}, ValueError,
     r"^comp_sum_loss: tau must lie in \[0, inf\); got -0\.5\.$"),
    ("comp_sum-tau-inf", LF.comp_sum_loss, (_x(), _y()), {"tau": float("inf")}, ValueError, r"tau must lie in \[0, inf\)"),
    ("comp_sum-tau-bool", LF.comp_sum_loss, (_x(), _y()), {"tau": True}, TypeError, r"tau must be a real number; got bool"),
    ("gce-q-zero", LF.generalized_cross_entropy, (_x(), _y()), {"q": 0.0}, ValueError,
     r"^generalized_cross_entropy: q must lie in \(0, 1\]; got 0\.0\.$"),
    ("gce-q-big", LF.generalized_cross_entropy, (_x(), _y()), {"q": 1.5}, ValueError, r"q must lie in \(0, 1\]; got 1\.5"),
    ("gce-q-negative", LF.generalized_cross_entropy, (_x(), _y()), {"q": -0.2}, ValueError, r"q must lie in \(0, 1\]"),
    ("minimizer-tau", comp_sum_minimizer, (torch.full((2, 3), 1 / 3),), {"tau": -1.0}, ValueError, r"tau must lie in"),
    ("get_loss-unknown", lossbook.get_loss, ("crossentropy",), {}, ValueError,
     r"unknown loss 'crossentropy'; lossbook\.list_losses\(\) gives the \d+ known names"),
    ("get_loss-bad-tau", lossbook.get_loss, ("comp_sum",), {"tau": -1}, ValueError, r"tau must lie in \[0, inf\); got -1"),
    ("module-comp_sum", lossbook.CompSumLoss, (), {"tau": -1}, ValueError, r"^comp_sum_loss: tau must lie in"),
    ("module-gce", lossbook.GeneralizedCrossEntropyLoss, (), {"q": 0}, ValueError,
     r"^generalized_cross_entropy: q must lie in \(0, 1\]; got 0\.0"),
    ("module-gce-big", lossbook.GeneralizedCrossEntropyLoss, (1.2,), {}, ValueError, r"q must lie in \(0, 1\]; got 1\.2"),
]


def _generic_rows():
    for name in LOSSES:
        info = lossbook.loss_info(name)
        for row_id, args, kwargs, exc, regex in GENERIC:
            if row_id.startswith("prob-") and "prob_target" not in info.supports:
                continue
            if row_id.startswith("weight") and "weight" not in info.supports:
                continue
            if row_id.startswith("smoothing") and "label_smoothing" not in info.supports:
                continue
            if "ignore" in row_id and "ignore_index" not in info.supports:
                continue
            if row_id in INDEX_ONLY and "prob_target" not in info.supports:
                exc, regex = INDEX_ONLY[row_id]
            # every message names the function that raised it
            full = rf"^{re.escape(info.function.__name__)}: .*{regex}"
            yield pytest.param(ErrorInput(info.function, args, kwargs, exc, full), id=f"{name}-{row_id}")
        if "prob_target" not in info.supports:
            for row_id, args, kwargs, exc, regex in INDEX_ONLY_EXTRA:
                full = rf"^{re.escape(info.function.__name__)}: .*{regex}"
                yield pytest.param(ErrorInput(info.function, args, kwargs, exc, full), id=f"{name}-{row_id}")


def _specific_rows():
    for row_id, fn, args, kwargs, exc, regex in SPECIFIC:
        yield pytest.param(ErrorInput(fn, args, kwargs, exc, regex), id=row_id)


@pytest.mark.parametrize("case", [*_generic_rows(), *_specific_rows()])
def test_error_input(case: ErrorInput):
    with pytest.raises(case.exc, match=re.compile(case.match, re.DOTALL)):
        case.fn(*case.args, **case.kwargs)


@pytest.mark.parametrize("name", LOSSES)
def test_module_rejects_bad_input_like_the_function(name):
    module = lossbook.get_loss(name)
    with pytest.raises(TypeError, match=r"squeeze|int64"):
        module(_x(), _y().int())
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        lossbook.get_loss(name, reduction="avg")(_x(), _y())


def test_module_hyperparameter_errors_come_at_construction_not_forward():
    # construction alone raises: nothing is called with data
    with pytest.raises(ValueError, match="tau"):
        lossbook.CompSumLoss(tau=-1)
    with pytest.raises(ValueError, match=r"\bq\b"):
        lossbook.GeneralizedCrossEntropyLoss(q=0)
    # valid boundaries are accepted
    lossbook.CompSumLoss(tau=0.0)
    lossbook.GeneralizedCrossEntropyLoss(q=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to put weight and logits on different devices")
@pytest.mark.parametrize("name", [n for n in LOSSES if "weight" in lossbook.loss_info(n).supports])
def test_weight_on_another_device(name):
    fn = lossbook.loss_info(name).function
    with pytest.raises(ValueError, match=r"weight is on cuda:0 but logits are on cpu\. Use weight\.to\(logits\.device\)"):
        fn(_x(), _y(), weight=torch.ones(C, device="cuda"))


def test_no_assert_or_bare_raise_in_the_library():
    """User errors are ValueError/TypeError: ``assert`` vanishes under ``python -O``."""
    root = Path(lossbook.__file__).resolve().parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}: assert")
            elif isinstance(node, ast.Raise) and node.exc is None:
                offenders.append(f"{path.relative_to(root)}:{node.lineno}: bare raise")
    assert len(list(root.rglob("*.py"))) > 5
    assert not offenders, offenders


def _layer(h, y):
    return lossbook.FactoredSphericalLayer(4, 10)(h, y)


def _head(x):
    return lossbook.MarginHead(5, 7)(x, torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize(
    "fn, args, exc, match",
    [
        (_head, ([[0.0] * 5] * 3,), TypeError,
         r"^MarginHead: embeddings must be a floating tensor of shape \(N, 5\); got list\. "
         r"Wrap it with torch\.as_tensor"),
        (_head, (torch.zeros(3, 5, dtype=torch.long),), TypeError,
         r"^MarginHead: embeddings must be a floating tensor of shape \(N, 5\); got int64 of shape \(3, 5\)\. "
         r"Use embeddings\.float\(\)"),
        (_head, (torch.zeros(3, 4),), ValueError,
         r"^MarginHead: embeddings must be a floating tensor of shape \(N, 5\); got float32 of shape \(3, 4\)\.$"),
        (lambda x: LF.partial_fc_loss(x, torch.zeros(3, dtype=torch.long), torch.randn(7, 5)), ("not a tensor",),
         TypeError, r"^partial_fc_loss: embeddings must be a floating tensor of shape \(N, 5\); got str"),
        (lambda h: _layer(h, torch.tensor([1, 2])), (torch.zeros(2, 4, dtype=torch.long),), TypeError,
         r"^FactoredSphericalLayer: hidden states must be a floating tensor of shape \(m, 4\); got int64"),
        (lambda h: _layer(h, torch.tensor([1, 2])), (torch.zeros(2, 5),), ValueError,
         r"^FactoredSphericalLayer: hidden states must be a floating tensor of shape \(m, 4\); got float32 of shape"),
        (lambda y: _layer(torch.zeros(2, 4), y), (torch.tensor([1.0, 2.0]),), TypeError,
         r"^FactoredSphericalLayer: target must be int64 class indices of shape \(2,\); got float32"),
    ],
    ids=["head-list", "head-int", "head-shape", "partial-fc-str", "layer-int", "layer-shape", "layer-float-target"],
)
def test_embedding_and_hidden_state_errors_say_type_or_value(fn, args, exc, match):
    """A wrong type or dtype is a TypeError, a wrong shape a ValueError, for heads and layers too."""
    with pytest.raises(exc, match=match):
        fn(*args)
