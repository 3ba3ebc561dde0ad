"""Shared fixtures and helpers for the library tests.

* ``device``: the devices named in ``LOSSBOOK_TEST_DEVICE`` (comma-separated, default ``"cpu"``);
  a CUDA device is skipped cleanly when ``torch.cuda.is_available()`` is False.
* float64 helpers: :func:`make_logits`, :func:`make_target`, :func:`make_prob_target`,
  :func:`assert_close64`, and :func:`hp_kwargs` (a loss's own hyper-parameters, for the registry).
* :func:`make_input` / :func:`to_input`: logits mapped into a registered loss's input domain
  (``inputs="cosine"`` losses, the margin family, get tanh(x) ∈ [−1, 1]; the others x itself), so the
  generic contract tests feed every loss valid inputs.
* the golden runs (``tests/golden/*.ipynb``, collected by nbval under ``--nbval``) are compared by
  :mod:`lossbook.lab.golden`: exactly, or within the chapter's stated tolerance for cells tagged
  ``golden-float`` / ``golden-trained`` / ``golden-timing``, so they pass on any CPU.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import lossbook
from lossbook.lab import golden

# Tests use tiny tensors: intra-op threads only add OpenMP spin-wait overhead, which is severe under
# pytest-xdist on a small machine (measured ~40x slower on 2 cores with 2 workers).
torch.set_num_threads(1)
# Kernels started by the notebook tests (papermill, nbval) inherit this: no progress bars in outputs.
os.environ["LOSSBOOK_PROGRESS"] = "0"

# Hypothesis: few examples, no deadline (the first call of a torch op can be slow), and derandomized:
# the same examples on every machine and every run, so `make test` cannot fail by the luck of the
# draw (a random float64 example can be ill-conditioned enough to miss a 1e-9 tolerance).
# HYPOTHESIS_PROFILE=explore searches fresh random examples, more of them, for development.
settings.register_profile(
    "lossbook",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "explore",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "lossbook"))

F64 = torch.float64
TOL64 = {"rtol": 1e-12, "atol": 1e-12}

DEVICES = [d.strip() for d in os.environ.get("LOSSBOOK_TEST_DEVICE", "cpu").split(",") if d.strip()]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """A torch device to run on, from ``LOSSBOOK_TEST_DEVICE`` (default ``cpu``)."""
    dev = torch.device(request.param)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"LOSSBOOK_TEST_DEVICE={request.param!r} but torch.cuda.is_available() is False")
    return dev


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_logits(n: int = 6, c: int = 4, *, seed: int = 0, scale: float = 2.0, dtype=F64, device="cpu",
                requires_grad: bool = False) -> torch.Tensor:
    """Random logits ``scale``·N(0, 1) of shape (n, c), made on CPU (so values do not depend on the device)."""
    x = (scale * torch.randn(n, c, generator=generator(seed), dtype=F64)).to(dtype=dtype, device=device)
    return x.requires_grad_(requires_grad)


def to_input(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` mapped into the input domain of loss ``name``: cosine-input losses get tanh(x) ∈ [−1, 1]
    (large |x| saturates to exactly ±1, the extreme cosines); logit losses get ``x`` unchanged."""
    return torch.tanh(x) if lossbook.loss_info(name).inputs == "cosine" else x


def make_input(name: str, n: int = 6, c: int = 4, *, seed: int = 0, scale: float = 2.0, dtype=F64, device="cpu",
               requires_grad: bool = False) -> torch.Tensor:
    """:func:`make_logits` (made in float64 on CPU) passed through :func:`to_input` for loss ``name``,
    then cast; a leaf tensor, so tests can check its gradient and that it is not mutated."""
    x = to_input(name, make_logits(n, c, seed=seed, scale=scale))
    return x.to(dtype=dtype, device=device).requires_grad_(requires_grad)


def make_target(n: int = 6, c: int = 4, *, seed: int = 1, device="cpu") -> torch.Tensor:
    """Random int64 class indices of shape (n,)."""
    return torch.randint(0, c, (n,), generator=generator(seed)).to(device)


def make_prob_target(n: int = 6, c: int = 4, *, seed: int = 2, dtype=F64, device="cpu") -> torch.Tensor:
    """Random probability rows of shape (n, c) (a softmax of Gaussian scores), summing to 1."""
    z = torch.randn(n, c, generator=generator(seed), dtype=F64)
    return torch.softmax(z, dim=1).to(dtype=dtype, device=device)


def make_weight(c: int = 4, *, seed: int = 3, dtype=F64, device="cpu") -> torch.Tensor:
    """Random positive class weights in [0.5, 2)."""
    return (0.5 + 1.5 * torch.rand(c, generator=generator(seed), dtype=F64)).to(dtype=dtype, device=device)


def assert_close64(actual, expected, *, rtol: float = 1e-12, atol: float = 1e-12, msg: str | None = None) -> None:
    """``torch.testing.assert_close`` with float64-grade tolerances (values compared on CPU)."""
    actual = torch.as_tensor(actual).detach().cpu()
    expected = torch.as_tensor(expected, dtype=actual.dtype).detach().cpu()
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, check_dtype=False, msg=msg)


def assert_per_class_terms(terms, reference) -> None:
    """Column k of a loss's per-class term matrix (N, C) equals ``reference(k_target)``, the loss of
    every row at target k (``k_target`` a long tensor filled with k)."""
    n, c = terms.shape
    for k in range(c):
        assert_close64(terms[:, k], reference(torch.full((n,), k)))


def hp_kwargs(name: str) -> dict:
    """The registered hyper-parameters of loss ``name`` with their defaults."""
    return dict(lossbook.loss_info(name).hyperparameters)


def call_loss(name: str, logits, target, **kwargs):
    """Call the registered function of ``name`` with its default hyper-parameters plus ``kwargs``."""
    return lossbook.loss_info(name).function(logits, target, **{**hp_kwargs(name), **kwargs})


# ---- the golden runs: nbval executes, lossbook.lab.golden compares ---------------------------------


def _golden_cell_class():
    from nbval.plugin import IPyNbCell

    class GoldenCell(IPyNbCell):
        """An nbval cell whose outputs are compared by the cell's class (see lossbook.lab.golden)."""

        def compare_outputs(self, test, ref, skip_compare=None):
            diff = golden.compare_cell(ref, test, tags=self.cell.metadata.get("tags", []),
                                       nb_metadata=self.parent.nb.metadata, sanitize=self.sanitize)
            self.comparison_traceback = [] if diff is None else [diff]
            return diff is None

    return IPyNbCell, GoldenCell


def pytest_collection_modifyitems(config, items):
    """Golden cells get lossbook's comparison (nbval's own would demand the last digit)."""
    if not getattr(config.option, "nbval", False):
        return
    base, cls = _golden_cell_class()
    for item in items:
        if type(item) is base:
            item.__class__ = cls
