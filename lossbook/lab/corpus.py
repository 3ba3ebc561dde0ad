"""Offline language-model data: nothing here downloads anything.

* :func:`python_stdlib_tokens` — word-level tokens of the running interpreter's standard library
  sources, read with :mod:`tokenize` (large, Zipfian, always present);
* :class:`Vocabulary` — token ↔ id maps with ids sorted by frequency and ``<unk>`` = 0;
* :func:`ngram_dataset` — (context, next token) pairs from sliding windows;
* :class:`ZipfMarkovChain` / :func:`zipf_markov_chain` — a synthetic corpus with exact Zipf
  unigram frequencies and a known next-token distribution (so the best achievable loss is known);
* :func:`split_ids` — contiguous train/validation/test splits of a token stream.

Typical use::

    tokens = python_stdlib_tokens()                       # ~1.2 M tokens on CPython 3.11
    vocab = Vocabulary.build(tokens, max_size=10_000)
    train, val, test = split_ids(vocab.encode(tokens))
    x, y = ngram_dataset(train, context=4)                # (N, 4) contexts, (N,) next tokens

Every function returns new tensors and never modifies its inputs.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import sys
import sysconfig
import tokenize
from collections import Counter
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._validation import format_dtype, format_shape

__all__ = [
    "python_stdlib_tokens",
    "Vocabulary",
    "ngram_dataset",
    "ZipfMarkovChain",
    "zipf_markov_chain",
    "split_ids",
]

NUM, STR, NL, UNK = "<num>", "<str>", "<nl>", "<unk>"

# --- Python standard library tokens ------------------------------------------------------------------

#: Folders skipped anywhere in the tree. ``site-packages``/``dist-packages`` are third-party code, not the
#: standard library; ``test``/``tests`` hold CPython's regression suites (about as many lines as the
#: library itself, full of deliberately odd and machine-generated code); ``idlelib`` and ``lib2to3`` are
#: applications (an IDE, a code translator) rather than library modules. Skipping them keeps the corpus
#: closer to "ordinary library Python" and halves the time to read it.
SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"})

_FIXED = {tokenize.NUMBER: NUM, tokenize.STRING: STR, tokenize.NEWLINE: NL}
_KEEP_TEXT = {tokenize.NAME, tokenize.OP}
# Python ≥ 3.12 splits f-strings (≥ 3.14 also t-strings) into START … END; each becomes one <str>, as
# one STRING token does on 3.11, so the corpus means the same on every version.
_STRING_START = {getattr(tokenize, n) for n in ("FSTRING_START", "TSTRING_START") if hasattr(tokenize, n)}
_STRING_END = {getattr(tokenize, n) for n in ("FSTRING_END", "TSTRING_END") if hasattr(tokenize, n)}


def _stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files(root: Path) -> list[Path]:
    """The ``.py`` files under ``root`` outside :data:`SKIPPED_DIRS`, sorted by their relative POSIX path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        rel = Path(dirpath).relative_to(root)
        found += [(rel / f).as_posix() for f in filenames if f.endswith(".py")]
    return [root / rel for rel in sorted(found)]


def _file_tokens(path) -> list[str] | None:
    """The kept tokens of one source file, or ``None`` if it does not tokenize (or cannot be read)."""
    out: list[str] = []
    append = out.append
    depth = 0  # nesting of f-string/t-string START … END (Python ≥ 3.12)
    try:
        with open(path, "rb") as f:
            for tok in tokenize.tokenize(f.readline):
                kind = tok.type
                if depth:
                    depth += (kind in _STRING_START) - (kind in _STRING_END)
                elif kind in _KEEP_TEXT:
                    append(tok.string)
                elif kind in _FIXED:
                    append(_FIXED[kind])
                elif kind in _STRING_START:
                    append(STR)
                    depth = 1
                # COMMENT, NL, INDENT, DEDENT, ENCODING, ENDMARKER, ERRORTOKEN: dropped
    except (SyntaxError, tokenize.TokenError, UnicodeDecodeError, OSError):
        return None
    return out


@functools.lru_cache(maxsize=8)
def _stdlib_tokens(max_files: int | None) -> tuple[str, ...]:
    root = _stdlib_dir()
    tokens: list[str] = []
    used = 0
    for path in _stdlib_files(root):
        if max_files is not None and used >= max_files:
            break
        toks = _file_tokens(path)
        if toks is not None:
            tokens += toks
            used += 1
    if not tokens:
        raise ValueError(
            f"python_stdlib_tokens: found no readable .py sources under {root} (sysconfig's stdlib path). "
            "Some installs ship the standard library only as bytecode or in a zip file; use "
            "zipf_markov_chain(...) for a synthetic corpus instead."
        )
    return tuple(tokens)


def _check_stdlib_version(root: Path) -> None:
    """The sources under ``root`` must be those of the running interpreter."""
    os_py = Path(os.__file__).resolve() if getattr(os, "__file__", None) else None
    expected = f"python{sys.version_info.major}.{sys.version_info.minor}"
    name_ok = root.name == expected or not root.name.startswith("python")  # e.g. Windows' "Lib"
    if os_py is None or os_py.parent != root.resolve() or not name_ok:
        raise ValueError(
            f"python_stdlib_tokens: the standard library at {root} does not belong to the running "
            f"Python {sys.version_info.major}.{sys.version_info.minor} (os module at {os_py}). The corpus "
            "would not match this interpreter; run with the interpreter whose sources you want, or pass "
            "version_check=False."
        )


def python_stdlib_tokens(max_files: int | None = None, *, version_check: bool = False) -> list[str]:
    """Word-level tokens of the Python standard library's own ``.py`` sources.

    The files are those under ``sysconfig.get_paths()["stdlib"]`` (the running interpreter's
    library), in sorted order of their relative path, skipping the folders in :data:`SKIPPED_DIRS`
    (third-party ``site-packages``, the ``test``/``tests`` suites, ``idlelib``, ``lib2to3``). Each
    file is read with :mod:`tokenize`; a file that fails to tokenize is skipped. Kept tokens:

    * NAME (keywords and identifiers) and OP (operators, brackets) as written;
    * NUMBER as ``"<num>"``, STRING (f-strings included, whole) as ``"<str>"``;
    * NEWLINE (the end of a logical line) as ``"<nl>"``.

    Comments, blank-line NL, INDENT/DEDENT and ENDMARKER are dropped.

    ``max_files`` keeps only the first ``max_files`` files that tokenize (cheap for tests and
    smoke runs); ``None`` reads all of them (on CPython 3.11: 601 files, about 1.2 M tokens and
    23 k types, a few seconds). The result depends on the Python version; it is cached in memory
    per ``max_files``, and each call returns a new list. ``version_check=True`` first checks that
    the sources found are those of the running interpreter (its ``os`` module lives there and the
    folder is named for this version) and raises ``ValueError`` if not.
    """
    if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, Integral)):
        raise TypeError(
            f"python_stdlib_tokens: max_files must be None or a positive int; got {type(max_files).__name__}."
        )
    if max_files is not None and max_files < 1:
        raise ValueError(
            f"python_stdlib_tokens: max_files must be ≥ 1 (or None for all files); got {max_files}."
        )
    if version_check:
        _check_stdlib_version(_stdlib_dir())
    return list(_stdlib_tokens(None if max_files is None else int(max_files)))


# --- Vocabulary ---------------------------------------------------------------------------------------


def _check_token_list(name: str, tokens) -> list[str]:
    if isinstance(tokens, (str, bytes)):
        raise TypeError(
            f"{name}: tokens must be a sequence of strings, not one string (which would be read character "
            f"by character); got {tokens[:20]!r}. Did you mean tokens.split() or [tokens]?"
        )
    if isinstance(tokens, Tensor) or not isinstance(tokens, Iterable):
        raise TypeError(
            f"{name}: tokens must be an iterable of strings; got {type(tokens).__name__}."
            + (" For ids, use Vocabulary.decode(ids)." if isinstance(tokens, Tensor) else "")
        )
    tokens = list(tokens)
    bad = next((t for t in tokens if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"{name}: every token must be a str; got {type(bad).__name__} ({bad!r}).")
    return tokens


def _check_count(name: str, arg: str, value, minimum: int, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}: {arg} must be an int; got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name}: {arg} must be ≥ {minimum}; got {value}.")
    return int(value)


class Vocabulary:
    """A fixed token ↔ id map. Id 0 is ``<unk>``; ids 1, 2, … go to tokens by descending count.

    Build it with :meth:`build`. ``counts[i]`` is how often token ``i`` occurred in the tokens it
    was built from (``counts[0]``: tokens mapped to ``<unk>`` — below ``min_count`` or beyond
    ``max_size``), so ``counts.sum()`` is the number of tokens and ``counts`` can feed a unigram
    sampler. Apart from id 0, ids are in frequency order, as log-uniform samplers assume.
    """

    __slots__ = ("_counts", "_itos", "_stoi")

    def __init__(self, itos: Sequence[str], counts) -> None:
        itos = tuple(itos)
        counts = torch.as_tensor(counts, dtype=torch.int64).clone()
        if not itos or itos[0] != UNK:
            raise ValueError(f"Vocabulary: the first token must be {UNK!r}; got {itos[:1]!r}. Use Vocabulary.build(tokens).")
        if len(set(itos)) != len(itos):
            raise ValueError("Vocabulary: tokens must be distinct. Use Vocabulary.build(tokens).")
        if counts.shape != (len(itos),) or (counts < 0).any():
            raise ValueError(
                f"Vocabulary: counts must be {len(itos)} non-negative integers, one per token; got shape "
                f"{format_shape(counts)}."
            )
        self._itos = itos
        self._stoi = {t: i for i, t in enumerate(itos)}
        self._counts = counts

    @classmethod
    def build(cls, tokens: Iterable[str], max_size: int | None = None, min_count: int = 1) -> Vocabulary:
        """Count ``tokens`` and keep the most frequent ones.

        Ids are given by descending count, ties broken by the token string, so the result does not
        depend on the order of ``tokens``. ``max_size`` bounds ``len(vocab)`` *including* ``<unk>``
        (``None``: no bound); tokens seen fewer than ``min_count`` times map to ``<unk>``. A literal
        ``"<unk>"`` in ``tokens`` counts toward id 0.
        """
        tokens = _check_token_list("Vocabulary.build", tokens)
        max_size = _check_count("Vocabulary.build", "max_size", max_size, 1, allow_none=True)
        min_count = _check_count("Vocabulary.build", "min_count", min_count, 1)
        counter = Counter(tokens)
        unk_count = counter.pop(UNK, 0)
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        keep = [kv for kv in ranked if kv[1] >= min_count]
        if max_size is not None:
            keep = keep[: max_size - 1]
        unk_count += len(tokens) - unk_count - sum(c for _, c in keep)
        return cls((UNK, *(t for t, _ in keep)), [unk_count, *(c for _, c in keep)])

    unk_id = 0
    unk_token = UNK

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token) -> bool:
        return token in self._stoi

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self._itos[1:6])
        return f"Vocabulary(size={len(self)}, tokens={int(self._counts.sum())}, most frequent: {head}{', …' if len(self) > 6 else ''})"

    @property
    def itos(self) -> tuple[str, ...]:
        """The tokens, indexed by id."""
        return self._itos

    @property
    def counts(self) -> Tensor:
        """int64 ``(len(vocab),)``: occurrences of each id in the building tokens (a new tensor each call)."""
        return self._counts.clone()

    def encode(self, tokens: Iterable[str]) -> Tensor:
        """int64 ids ``(len(tokens),)``; unknown tokens become 0 (``<unk>``)."""
        tokens = _check_token_list("Vocabulary.encode", tokens)
        get = self._stoi.get
        return torch.tensor([get(t, 0) for t in tokens], dtype=torch.int64)

    def decode(self, ids) -> list[str]:
        """The tokens of 1-D integer ``ids`` (a tensor or a sequence of ints)."""
        if isinstance(ids, Tensor):
            if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise TypeError(f"Vocabulary.decode: ids must be integers; got {format_dtype(ids)}. Use ids.long().")
            if ids.dim() != 1:
                raise ValueError(
                    f"Vocabulary.decode: ids must be 1-D; got shape {format_shape(ids)}. Use ids.reshape(-1), "
                    "or decode each row."
                )
            ids = ids.tolist()
        elif isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"Vocabulary.decode: ids must be a 1-D tensor or a sequence of ints; got {type(ids).__name__}.")
        else:
            ids = list(ids)
            bad = next((i for i in ids if isinstance(i, bool) or not isinstance(i, Integral)), None)
            if bad is not None:
                raise TypeError(f"Vocabulary.decode: ids must be ints; got {type(bad).__name__} ({bad!r}).")
        bad = next((i for i in ids if not 0 <= i < len(self._itos)), None)
        if bad is not None:
            raise ValueError(f"Vocabulary.decode: ids must lie in [0, {len(self)}); got {bad}.")
        itos = self._itos
        return [itos[i] for i in ids]


# --- windows and splits -------------------------------------------------------------------------------


def _check_ids(name: str, ids) -> None:
    if not isinstance(ids, Tensor):
        raise TypeError(
            f"{name}: ids must be a 1-D int64 torch.Tensor; got {type(ids).__name__}. "
            "Wrap it with torch.as_tensor(ids, dtype=torch.long)."
        )
    if ids.dtype != torch.int64:
        raise TypeError(f"{name}: ids must be int64; got {format_dtype(ids)}. Use ids.long().")
    if ids.dim() != 1:
        raise ValueError(f"{name}: ids must be 1-D (one token stream); got shape {format_shape(ids)}. Use ids.reshape(-1).")


def ngram_dataset(ids: Tensor, context: int) -> tuple[Tensor, Tensor]:
    """Every window of ``context`` consecutive ids and the id that follows it, without padding.

    Returns ``contexts`` int64 ``(N, context)`` and ``targets`` int64 ``(N,)`` with
    ``N = len(ids) − context``: ``contexts[i] = ids[i : i + context]``, ``targets[i] = ids[i + context]``.
    Both are new tensors (``contexts`` takes ``N·context·8`` bytes) on ``ids``'s device.
    """
    _check_ids("ngram_dataset", ids)
    context = _check_count("ngram_dataset", "context", context, 1)
    if len(ids) <= context:
        raise ValueError(
            f"ngram_dataset: need more than context={context} ids to make one (context, target) pair; got "
            f"{len(ids)}. Use a smaller context or a longer stream."
        )
    contexts = ids.unfold(0, context, 1)[:-1].contiguous()
    return contexts, ids[context:].clone()


def split_ids(ids: Tensor, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> tuple[Tensor, ...]:
    """Cut a token stream into contiguous parts (train, validation, test by default), in order.

    Part ``k`` runs from ``round(n·(f_0+…+f_{k−1}))`` to ``round(n·(f_0+…+f_k))``, so the sizes
    add up to ``n`` exactly. Contiguous parts keep held-out text unseen (random windows would
    overlap the training ones). Returns new tensors, one per fraction.
    """
    _check_ids("split_ids", ids)
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) or not fractions:
        raise TypeError(f"split_ids: fractions must be a non-empty sequence of numbers, e.g. (0.8, 0.1, 0.1); got {fractions!r}.")
    if any(isinstance(f, bool) or not isinstance(f, Real) or not f > 0 for f in fractions) or not math.isclose(
        math.fsum(fractions), 1.0, rel_tol=0, abs_tol=1e-9
    ):
        raise ValueError(f"split_ids: fractions must be positive and sum to 1; got {tuple(fractions)}.")
    n = len(ids)
    cuts = [0]
    acc = 0.0
    for f in fractions[:-1]:
        acc += float(f)
        cuts.append(round(n * acc))
    cuts.append(n)
    sizes = [b - a for a, b in itertools.pairwise(cuts)]
    if min(sizes) == 0:
        raise ValueError(
            f"split_ids: {n} ids are too few for fractions {tuple(fractions)} (sizes {sizes}); every part "
            "must be non-empty. Use a longer stream or larger fractions."
        )
    return tuple(ids[a:b].clone() for a, b in itertools.pairwise(cuts))


# --- synthetic Zipf Markov chain ----------------------------------------------------------------------


def _generator(seed: int, stream: int) -> torch.Generator:
    """A torch generator for ``(seed, stream)``; distinct streams of one seed are independent."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def _check_seed(name: str, seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"{name}: seed must be a non-negative int; got {type(seed).__name__} ({seed!r}).")
    if seed < 0:
        raise ValueError(f"{name}: seed must be a non-negative int; got {seed}.")
    return int(seed)


class ZipfMarkovChain:
    r"""A Markov chain over ``vocab_size`` tokens with exact Zipf unigram frequencies and a known,
    learnable next-token distribution.

    Token ``j`` has unigram probability :math:`q_j \propto (j+1)^{-s}` (id 0 is the most frequent,
    ids in frequency order) with ``s = exponent``. Each token belongs to one of ``rank`` clusters,
    drawn uniformly at random from ``seed``; :math:`Q_k` is the unigram mass of cluster ``k``. Given
    the previous token ``i`` in cluster :math:`k = c(i)`, the next token is

    * with probability ``coherence`` = α: drawn from ``q`` restricted to cluster ``k``;
    * otherwise: drawn from ``q`` (a fresh Zipf draw),

    .. math:: P(j \mid i) = q_j\,\big((1-\alpha) + \alpha\,[c(j) = c(i)]\,/\,Q_{c(i)}\big).

    Summing :math:`q_i P(j \mid i)` over ``i`` gives back :math:`q_j`, so ``q`` is the stationary
    distribution: long samples have Zipf marginals exactly (samples start from ``q``, so every
    position does). The transition matrix has rank ``rank`` (one distinct row per cluster), so a
    softmax model with unigram biases and ``rank``-dimensional embeddings can represent it. The
    entropy rate :math:`H(\text{next} \mid \text{prev})` (:meth:`entropy_rate`, the best cross-entropy
    any model can reach) is below the unigram entropy (:meth:`unigram_entropy`). Memory is O(V):
    rows are computed on demand, never stored as a V×V matrix.

    Sampling is vectorised: the stream splits into runs that start at a fresh Zipf draw and stay in
    its cluster, so a run's cluster is that of its first token.
    """

    def __init__(self, vocab_size: int, *, exponent: float = 1.1, rank: int = 32, coherence: float = 0.9,
                 seed: int) -> None:
        name = "ZipfMarkovChain"
        vocab_size = _check_count(name, "vocab_size", vocab_size, 2)
        rank = _check_count(name, "rank", rank, 1)
        if rank > vocab_size:
            raise ValueError(f"{name}: rank (the number of clusters) must be ≤ vocab_size={vocab_size}; got {rank}.")
        if isinstance(exponent, bool) or not isinstance(exponent, Real) or not (0 < exponent < math.inf):
            raise ValueError(f"{name}: exponent must be a positive number (e.g. 1.1); got {exponent!r}.")
        if isinstance(coherence, bool) or not isinstance(coherence, Real) or not (0 <= coherence < 1):
            raise ValueError(
                f"{name}: coherence must be in [0, 1) (at 1 the chain never leaves a cluster); got {coherence!r}."
            )
        seed = _check_seed(name, seed)
        self.vocab_size, self.rank, self.seed = vocab_size, rank, seed
        self.exponent, self.coherence = float(exponent), float(coherence)

        q = torch.arange(1, vocab_size + 1, dtype=torch.float64).pow(-self.exponent)
        self._q = q / q.sum()
        self._cluster = torch.randint(0, rank, (vocab_size,), generator=_generator(seed, 0))
        self._mass = torch.zeros(rank, dtype=torch.float64).index_add_(0, self._cluster, self._q)
        # tokens grouped by cluster (ids ascending inside a cluster) and the cumulative masses, for
        # inverse-CDF draws restricted to one cluster
        self._order = torch.argsort(self._cluster, stable=True)
        self._cum_by_cluster = torch.cumsum(self._q[self._order], 0)
        sizes = torch.bincount(self._cluster, minlength=rank)
        self._seg_end = torch.cumsum(sizes, 0)
        self._seg_start = self._seg_end - sizes
        self._mass_before = torch.cumsum(self._mass, 0) - self._mass
        self._cum = torch.cumsum(self._q, 0)

    def __repr__(self) -> str:
        return (f"ZipfMarkovChain(vocab_size={self.vocab_size}, exponent={self.exponent}, rank={self.rank}, "
                f"coherence={self.coherence}, seed={self.seed})")

    @property
    def unigram(self) -> Tensor:
        """float64 ``(V,)``: the stationary (Zipf) distribution q."""
        return self._q.clone()

    @property
    def cluster(self) -> Tensor:
        """int64 ``(V,)``: the cluster of each token."""
        return self._cluster.clone()

    def _check_token_ids(self, name: str, ids) -> Tensor:
        if not isinstance(ids, Tensor):
            ids = torch.as_tensor(ids)
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"ZipfMarkovChain.{name}: token ids must be integers; got {format_dtype(ids)}. Use ids.long().")
        ids = ids.long().cpu()
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ZipfMarkovChain.{name}: token ids must lie in [0, {self.vocab_size}).")
        return ids

    def transition(self, prev_ids) -> Tensor:
        """float64 ``(*prev_ids.shape, V)``: the next-token distribution after each of ``prev_ids``.

        Each row sums to 1. Rows are dense (V floats each): for large V, ask for few rows at a time,
        or use :meth:`log_prob` for the probability of given next tokens.
        """
        prev = self._check_token_ids("transition", prev_ids)
        k = self._cluster[prev].unsqueeze(-1)
        same = (self._cluster == k).to(torch.float64)
        return self._q * ((1 - self.coherence) + self.coherence * same / self._mass[k])

    def log_prob(self, prev_ids, next_ids) -> Tensor:
        """float64: ``log P(next | prev)`` elementwise (broadcast), in O(1) memory per pair.

        ``-log_prob(x[:-1], x[1:]).mean()`` is the true model's cross-entropy on a stream ``x``.
        """
        prev = self._check_token_ids("log_prob", prev_ids)
        nxt = self._check_token_ids("log_prob", next_ids)
        k = self._cluster[prev]
        same = (self._cluster[nxt] == k).to(torch.float64)
        return self._q[nxt].log() + torch.log((1 - self.coherence) + self.coherence * same / self._mass[k])

    def unigram_entropy(self) -> float:
        """H(q) in nats: the best cross-entropy of a model that ignores the context."""
        q = self._q
        return float(-(q * q.log()).sum())

    def entropy_rate(self) -> float:
        """H(next | prev) in nats under the stationary distribution: the best achievable cross-entropy."""
        a, q = self.coherence, self._q
        qlogq = q * q.log()
        s_all = float(qlogq.sum())
        s_k = torch.zeros(self.rank, dtype=torch.float64).index_add_(0, self._cluster, qlogq)
        m = self._mass
        used = m > 0
        m, s_k = m[used], s_k[used]
        inside = (1 - a) + a / m  # P(j|i) = q_j·inside for j in i's cluster, q_j·(1 − a) outside
        h_k = -inside * (s_k + m * inside.log()) - (1 - a) * ((s_all - s_k) + (1 - m) * math.log(1 - a))
        return float((m * h_k).sum())

    def sample(self, length: int, *, seed: int) -> Tensor:
        """A stream of ``length`` int64 token ids, reproducible from ``seed`` (and the chain's own seed).

        The first token is drawn from q, so the stream is stationary from its start.
        """
        length = _check_count("ZipfMarkovChain.sample", "length", length, 0)
        seed = _check_seed("ZipfMarkovChain.sample", seed)
        if length == 0:
            return torch.zeros(0, dtype=torch.int64)
        g = _generator(seed, 1)
        fresh = torch.rand(length, generator=g, dtype=torch.float64) >= self.coherence
        fresh[0] = True
        u = torch.rand(length, generator=g, dtype=torch.float64)
        v = self.vocab_size
        out = torch.empty(length, dtype=torch.int64)
        # run starts: an unrestricted Zipf draw by inverse CDF
        out[fresh] = torch.searchsorted(self._cum, u[fresh], right=True).clamp_(max=v - 1)
        # the rest: a draw from q restricted to the cluster of the run's first token
        start = torch.where(fresh, torch.arange(length), torch.zeros((), dtype=torch.int64))
        start = torch.cummax(start, 0).values
        rest = ~fresh
        k = self._cluster[out[start[rest]]]
        target = self._mass_before[k] + u[rest] * self._mass[k]
        pos = torch.searchsorted(self._cum_by_cluster, target, right=True)
        pos = torch.minimum(torch.maximum(pos, self._seg_start[k]), self._seg_end[k] - 1)  # float rounding
        out[rest] = self._order[pos]
        return out


def zipf_markov_chain(vocab_size: int, length: int, *, exponent: float = 1.1, rank: int = 32,
                      coherence: float = 0.9, seed: int) -> Tensor:
    """``length`` int64 token ids from :class:`ZipfMarkovChain` (see there for the model).

    ``seed`` fixes both the chain (its clusters) and the sample, through independent streams.
    Keep the chain (``ZipfMarkovChain(...)``) when you need its true probabilities.
    """
    chain = ZipfMarkovChain(vocab_size, exponent=exponent, rank=rank, coherence=coherence, seed=seed)
    return chain.sample(length, seed=seed)
