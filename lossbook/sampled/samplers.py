r"""Candidate samplers with exact probabilities and TensorFlow's expected counts.

Each sampler draws classes i.i.d. from a distribution P over ``[0, num_classes)`` and knows P in
closed form:

* :class:`UniformSampler` — P(k) = 1/D;
* :class:`LogUniformSampler` — the Zipfian P(k) = (log(k + 2) − log(k + 1)) / log(D + 1), drawn as
  ⌊exp(U·log(D + 1))⌋ − 1 (TensorFlow's ``LogUniformSampler``; classes should be sorted by
  decreasing frequency);
* :class:`UnigramSampler` — P(k) ∝ count_k^distortion (``distortion`` 1: unigram, 0: uniform,
  0.75: word2vec's choice), TensorFlow's ``FixedUnigramSampler``;
* :class:`LearnedUnigramSampler` — P(k) ∝ w_k with every w_k starting at 1 and growing by 1
  each time k is seen as a true class (TensorFlow's ``UnigramSampler``); the counts are a buffer;
* :class:`AllSampler` — every class once, expected count 1 (for tests).

:meth:`CandidateSampler.sample` returns S candidates, shared by the whole batch, with their
*expected counts* Q, the quantity that ``subtract_log_q`` subtracts (``RangeSampler::
SampleBatchGetExpectedCountAvoid`` in ``tensorflow/core/kernels/range_sampler.cc``):

* ``unique=False``: S i.i.d. draws, Q(k) = S·P(k);
* ``unique=True``: draws are taken one at a time, rejecting repeats, until S distinct classes are
  in hand; with ``num_tries`` the number of draws this took, Q(k) = 1 − (1 − P(k))^num_tries,
  computed as ``-expm1(num_tries · log1p(-P(k)))`` — TensorFlow's approximation, which treats
  ``num_tries`` as fixed. When no draw was rejected (num_tries = S) TensorFlow returns S·P(k),
  and so does this code.

Draws run on the device of the sampler (its buffers follow ``.to()``) or the one passed to
:meth:`~CandidateSampler.sample`; a ``torch.Generator`` makes them reproducible. When the
generator lives on another device than the output, the (few) draws are made there and moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..registry import register_method

__all__ = [
    "CandidateSample",
    "CandidateSampler",
    "UniformSampler",
    "LogUniformSampler",
    "UnigramSampler",
    "LearnedUnigramSampler",
    "AllSampler",
    "make_sampler",
    "tf_expected_count",
]

F64 = torch.float64


@dataclass
class CandidateSample:
    """What :meth:`CandidateSampler.sample` returns (TensorFlow's ``sampled_values`` plus num_tries).

    ``sampled_candidates`` (S,) int64; ``true_expected_count`` shaped like ``true_classes``
    (None when none were given); ``sampled_expected_count`` (S,); both float64.
    """

    sampled_candidates: Tensor
    true_expected_count: Tensor | None
    sampled_expected_count: Tensor
    num_tries: int
    unique: bool

    def __iter__(self):  # unpacks like TensorFlow's 3-tuple
        return iter((self.sampled_candidates, self.true_expected_count, self.sampled_expected_count))


def tf_expected_count(p: Tensor, num_sampled: int, num_tries: int) -> Tensor:
    """TensorFlow's ``ExpectedCountHelper``: p·S when num_tries = S, else 1 − (1 − p)^num_tries."""
    if num_tries == num_sampled:
        return p * num_sampled
    return -torch.expm1(num_tries * torch.log1p(-p))


def _positive_int(name: str, arg: str, value, *, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: {arg} must be an int ≥ {low}; got {value!r}.")
    return value


class CandidateSampler(nn.Module):
    """Base class: draws i.i.d. classes from a distribution with a closed-form probability."""

    #: short name used by :func:`make_sampler` and in messages
    kind = "base"

    def __init__(self, num_classes: int, *, device=None) -> None:
        super().__init__()
        self.num_classes = _positive_int(type(self).__name__, "num_classes", num_classes)
        # an empty buffer, so that the sampler's device follows .to() like any module
        self.register_buffer("_anchor", torch.empty(0, device=device), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

    # --- to override ---------------------------------------------------------------------------
    def _probability(self, classes: Tensor) -> Tensor:
        raise NotImplementedError

    def _draw(self, n: int, device, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def _num_support(self) -> int:
        """How many classes have positive probability (the most ``unique=True`` can draw)."""
        return self.num_classes

    # --- public ---------------------------------------------------------------------------------
    def probability(self, classes: Tensor) -> Tensor:
        """P(k) of one draw, float64, shaped like ``classes``."""
        name = f"{type(self).__name__}.probability"
        if not isinstance(classes, Tensor) or classes.dtype != torch.int64:
            raise TypeError(f"{name}: classes must be an int64 tensor; got "
                            f"{classes.dtype if isinstance(classes, Tensor) else type(classes).__name__}.")
        if classes.numel() and bool(((classes < 0) | (classes >= self.num_classes)).any()):
            bad = int(classes[(classes < 0) | (classes >= self.num_classes)][0])
            raise ValueError(f"{name}: class {bad} is outside [0, {self.num_classes}).")
        return self._probability(classes.to(self.device)).to(classes.device)

    def draw(self, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        """``n`` i.i.d. draws (int64), on ``device`` (default: the sampler's)."""
        device = self.device if device is None else torch.device(device)
        src = device if generator is None else generator.device
        out = self._draw(int(n), src, generator)
        return out.to(device)

    def sample(
        self,
        num_sampled: int,
        *,
        true_classes: Tensor | None = None,
        unique: bool = True,
        generator: torch.Generator | None = None,
        device=None,
    ) -> CandidateSample:
        """Draw ``num_sampled`` candidates shared by a batch, with their expected counts.

        ``true_classes`` (any shape, int64) only gets its expected counts computed; it is not
        excluded from the draw (as in TensorFlow). With ``unique=True`` the candidates are
        distinct, so ``num_sampled`` may not exceed the number of classes of positive probability.
        """
        name = f"{type(self).__name__}.sample"
        num_sampled = _positive_int(name, "num_sampled", num_sampled)
        device = self.device if device is None else torch.device(device)
        if unique and num_sampled > self._num_support():
            support = self._num_support()
            what = f"{support} classes" + ("" if support == self.num_classes else " of positive probability")
            raise ValueError(
                f"{name}: cannot draw {num_sampled} distinct classes out of {what} without replacement "
                f"(unique=True). Use num_sampled ≤ {support}, or unique=False to sample with replacement."
            )
        if true_classes is not None and (not isinstance(true_classes, Tensor) or true_classes.dtype != torch.int64):
            raise TypeError(f"{name}: true_classes must be an int64 tensor of class indices.")
        if unique:
            sampled, num_tries = self._draw_unique(num_sampled, device, generator)
        else:
            sampled, num_tries = self.draw(num_sampled, generator=generator, device=device), num_sampled
        p_s = self._probability(sampled.to(self.device)).to(device)
        sampled_ec = tf_expected_count(p_s, num_sampled, num_tries)
        true_ec = None
        if true_classes is not None:
            p_t = self.probability(true_classes)
            true_ec = tf_expected_count(p_t, num_sampled, num_tries)
        return CandidateSample(sampled, true_ec, sampled_ec, num_tries, unique)

    def _draw_unique(self, num_sampled: int, device, generator) -> tuple[Tensor, int]:
        """Sequential rejection sampling (TensorFlow's), vectorised block by block: the result
        and ``num_tries`` are those of drawing one class at a time until ``num_sampled`` are new."""
        chosen = torch.empty(0, dtype=torch.int64, device=device)
        tries = 0
        block = 2 * num_sampled + 16
        max_tries = 2**31 - 1  # TensorFlow's CHECK_LT(num_tries, kint32max)
        while chosen.numel() < num_sampled:
            need = num_sampled - chosen.numel()
            x = self.draw(block, generator=generator, device=device)
            # first occurrence of each value inside the block, and not drawn before
            uniq, inverse = torch.unique(x, return_inverse=True)
            pos = torch.arange(x.numel(), device=device)
            first = torch.full((uniq.numel(),), x.numel(), dtype=torch.int64, device=device)
            first.scatter_reduce_(0, inverse, pos, reduce="amin")
            new = (first[inverse] == pos) & ~torch.isin(x, chosen)
            count = new.cumsum(0)
            if int(count[-1]) >= need:
                last = int(torch.searchsorted(count, torch.tensor([need], device=device)))  # first index with count == need
                chosen = torch.cat([chosen, x[: last + 1][new[: last + 1]]])
                tries += last + 1
            else:
                chosen = torch.cat([chosen, x[new]])
                tries += x.numel()
                block *= 2
            if tries >= max_tries:
                raise RuntimeError(
                    f"{type(self).__name__}.sample: {tries} draws did not give {num_sampled} distinct classes; "
                    "the distribution is too concentrated for unique sampling. Use unique=False or fewer samples."
                )
        return chosen, tries


@register_method(kind="sampler", family="sampled")
class UniformSampler(CandidateSampler):
    """P(k) = 1/D (TensorFlow's ``uniform_candidate_sampler``)."""

    kind = "uniform"

    def _probability(self, classes: Tensor) -> Tensor:
        return torch.full(classes.shape, 1.0 / self.num_classes, dtype=F64, device=classes.device)

    def _draw(self, n, device, generator):
        return torch.randint(0, self.num_classes, (n,), generator=generator, device=device)


@register_method(kind="sampler", family="sampled")
class LogUniformSampler(CandidateSampler):
    """Zipfian P(k) = (log(k + 2) − log(k + 1)) / log(D + 1) (TensorFlow's ``log_uniform_candidate_sampler``).

    The class ids should be sorted by decreasing frequency for this to approximate word frequencies.
    """

    kind = "log_uniform"

    def _probability(self, classes: Tensor) -> Tensor:
        k = classes.to(F64)
        return torch.log((k + 2.0) / (k + 1.0)) / math.log1p(self.num_classes)

    def _draw(self, n, device, generator):
        u = torch.rand(n, dtype=F64, generator=generator, device=device)
        value = torch.exp(u * math.log1p(self.num_classes)).long() - 1
        return value.remainder(self.num_classes)  # TensorFlow's guard against round-off


class _TableSampler(CandidateSampler):
    """A sampler over an explicit weight table (inverse-CDF draws, O(log D) each)."""

    def _set_weights(self, w: Tensor) -> None:
        total = w.sum()
        if not bool(total > 0):
            raise ValueError(f"{type(self).__name__}: the weights must have a positive sum.")
        cdf = torch.cumsum(w, 0) / total
        cdf[-1] = 1.0
        self.probs = w / total
        self.cdf = cdf

    def _probability(self, classes: Tensor) -> Tensor:
        return self.probs[classes]

    def _draw(self, n, device, generator):
        u = torch.rand(n, dtype=F64, generator=generator, device=device).to(self.cdf.device)
        return torch.searchsorted(self.cdf, u, right=True).clamp_max(self.num_classes - 1).to(device)

    def _num_support(self) -> int:
        return int((self.probs > 0).sum())


@register_method(kind="sampler", family="sampled", paper="mikolov2013distributed")
class UnigramSampler(_TableSampler):
    """P(k) ∝ count_k^distortion (TensorFlow's ``fixed_unigram_candidate_sampler`` with ``unigrams``).

    ``distortion`` = 1 is the unigram distribution, 0 the uniform one; 0.75 (the default here) is
    word2vec's; TensorFlow's default is 1.0.
    """

    kind = "unigram"

    def __init__(self, counts, *, distortion: float = 0.75, device=None) -> None:
        counts = torch.as_tensor(counts, dtype=F64, device=device)
        if counts.dim() != 1 or counts.numel() == 0:
            raise ValueError(f"UnigramSampler: counts must be a non-empty 1-D sequence; got shape {tuple(counts.shape)}.")
        if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
            raise ValueError("UnigramSampler: counts must be finite and non-negative.")
        super().__init__(counts.numel(), device=counts.device)
        self.distortion = float(distortion)
        self.register_buffer("probs", torch.empty(0, dtype=F64, device=counts.device))
        self.register_buffer("cdf", torch.empty(0, dtype=F64, device=counts.device))
        self._set_weights(counts.pow(self.distortion))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, distortion={self.distortion}"


@register_method(kind="sampler", family="sampled")
class LearnedUnigramSampler(_TableSampler):
    """P(k) ∝ w_k, w_k = 1 + (number of times k was seen as a true class) (TensorFlow's
    ``learned_unigram_candidate_sampler``).

    :meth:`sample` computes the expected counts first, then adds the ``true_classes`` it was given
    to the counts (as TensorFlow's kernel does); :meth:`update` adds classes explicitly. The
    counts are a buffer (saved with ``state_dict``, unlike TensorFlow's); an update costs O(D).
    """

    kind = "learned_unigram"

    def __init__(self, num_classes: int, *, device=None) -> None:
        super().__init__(num_classes, device=device)
        self.register_buffer("counts", torch.ones(self.num_classes, dtype=F64, device=self.device))
        self.register_buffer("probs", torch.empty(0, dtype=F64, device=self.device))
        self.register_buffer("cdf", torch.empty(0, dtype=F64, device=self.device))
        self._set_weights(self.counts)

    @torch.no_grad()
    def update(self, classes: Tensor) -> None:
        """Add one to the count of every entry of ``classes`` (repeats count repeatedly)."""
        flat = classes.reshape(-1).to(self.counts.device)
        if flat.numel() and bool(((flat < 0) | (flat >= self.num_classes)).any()):
            raise ValueError(f"LearnedUnigramSampler.update: classes must lie in [0, {self.num_classes}).")
        self.counts.index_add_(0, flat, torch.ones_like(flat, dtype=F64))
        self._set_weights(self.counts)

    def sample(self, num_sampled: int, *, true_classes: Tensor | None = None, **kwargs) -> CandidateSample:
        out = super().sample(num_sampled, true_classes=true_classes, **kwargs)
        if true_classes is not None:
            self.update(true_classes)
        return out


@register_method(kind="sampler", family="sampled")
class AllSampler(CandidateSampler):
    """Every class once, in order, with expected count 1 (TensorFlow's ``all_candidate_sampler``);
    ``num_sampled`` must equal ``num_classes``. Meant for tests: with it, a sampled loss is the
    full one."""

    kind = "all"

    def _probability(self, classes: Tensor) -> Tensor:
        return torch.full(classes.shape, 1.0 / self.num_classes, dtype=F64, device=classes.device)

    def sample(self, num_sampled: int, *, true_classes: Tensor | None = None, unique: bool = True,
               generator=None, device=None) -> CandidateSample:
        if num_sampled != self.num_classes:
            raise ValueError(f"AllSampler.sample: num_sampled must equal num_classes = {self.num_classes}; "
                             f"got {num_sampled}.")
        device = self.device if device is None else torch.device(device)
        sampled = torch.arange(self.num_classes, device=device)
        true_ec = None if true_classes is None else torch.ones(true_classes.shape, dtype=F64, device=true_classes.device)
        return CandidateSample(sampled, true_ec, torch.ones(self.num_classes, dtype=F64, device=device),
                               self.num_classes, True)


_KINDS = {"uniform": UniformSampler, "log_uniform": LogUniformSampler, "all": AllSampler}


def make_sampler(sampler, num_classes: int, *, device=None, name: str = "make_sampler") -> CandidateSampler:
    """A :class:`CandidateSampler` from a name (``"uniform"``, ``"log_uniform"``, ``"all"``) or an instance."""
    if isinstance(sampler, CandidateSampler):
        if sampler.num_classes != num_classes:
            raise ValueError(f"{name}: the sampler draws from {sampler.num_classes} classes but there are "
                             f"{num_classes}; build it with num_classes={num_classes}.")
        return sampler
    if sampler in _KINDS:
        return _KINDS[sampler](num_classes, device=device)
    raise ValueError(
        f"{name}: sampler must be one of {sorted(_KINDS)} or a CandidateSampler instance (e.g. "
        f"UnigramSampler(counts), LearnedUnigramSampler(num_classes)); got {sampler!r}."
    )
