"""Offline language-model data: stdlib tokens, the vocabulary, n-gram windows, the Zipf Markov chain, splits."""

from __future__ import annotations

import keyword
import random
import re

import numpy as np
import pytest
import torch

from lossbook.lab import corpus
from lossbook.lab.corpus import Vocabulary, ZipfMarkovChain, ngram_dataset, split_ids, zipf_markov_chain

FEW_FILES = 12  # the first 12 stdlib files in sorted order: ~13 k tokens, well under 0.1 s to tokenize

# --- python_stdlib_tokens --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def few_tokens():
    return corpus.python_stdlib_tokens(FEW_FILES)


@pytest.fixture
def fake_stdlib(tmp_path, monkeypatch):
    """A small stand-in for the stdlib folder; the token cache is cleared around the test."""
    monkeypatch.setattr(corpus, "_stdlib_dir", lambda: tmp_path)
    corpus._stdlib_tokens.cache_clear()
    yield tmp_path
    corpus._stdlib_tokens.cache_clear()


def test_stdlib_tokens_nonempty_and_deterministic(few_tokens):
    assert len(few_tokens) > 5_000 and all(isinstance(t, str) and t for t in few_tokens)
    again = corpus.python_stdlib_tokens(FEW_FILES)
    assert again == few_tokens and again is not few_tokens
    again.clear()  # callers get their own list: the cache is untouched
    assert corpus.python_stdlib_tokens(FEW_FILES) == few_tokens
    # the same files read afresh (no cache) give the same tokens; fewer files give a prefix
    uncached = [t for p in corpus._stdlib_files(corpus._stdlib_dir())[:FEW_FILES] for t in corpus._file_tokens(p)]
    assert uncached == few_tokens
    head = corpus.python_stdlib_tokens(3)
    assert few_tokens[: len(head)] == head and len(head) < len(few_tokens)


def test_stdlib_tokens_normalised_and_without_comments(few_tokens):
    kinds = set(few_tokens)
    assert {"<num>", "<str>", "<nl>", "def", "return", "(", ")", ":"} <= kinds
    assert not any(t.startswith("#") for t in kinds), "comments must be dropped"
    assert not any(re.search(r"['\"]", t) for t in kinds), "string literals must become <str>"
    assert not any(re.match(r"[0-9]|\.[0-9]", t) for t in kinds), "number literals must become <num>"
    assert not any(t != t.strip() or "\n" in t for t in kinds), "no whitespace tokens (NL, INDENT, DEDENT)"
    # every kept token is a marker, a name/keyword, or an operator
    ident = re.compile(r"^\w+$")
    others = {t for t in kinds if not (t in {"<num>", "<str>", "<nl>"} or ident.match(t) or keyword.iskeyword(t))}
    assert others and all(not re.search(r"\w", t) for t in others)


def test_file_tokens_exact(tmp_path):
    src = (
        "# a comment\n"
        "def f(x=1.5e3, *, y='a'):  # trailing comment\n"
        "\n"
        "    return [x,\n"
        "            f\"{y}!\", b'\\x00', 0x1F, f\"{f'{y}'}\"]\n"
    )
    path = tmp_path / "m.py"
    path.write_text(src)
    assert corpus._file_tokens(path) == [
        "def", "f", "(", "x", "=", "<num>", ",", "*", ",", "y", "=", "<str>", ")", ":", "<nl>",
        "return", "[", "x", ",", "<str>", ",", "<str>", ",", "<num>", ",", "<str>", "]", "<nl>",
    ]  # fmt: skip


@pytest.mark.parametrize("bad", ["x = '''never closed\n", "if x:\n        a\n    b\n"])
def test_file_tokens_returns_none_when_tokenize_fails(tmp_path, bad):
    path = tmp_path / "bad.py"
    path.write_text(bad)
    assert corpus._file_tokens(path) is None


def test_stdlib_walk_skips_folders_and_bad_files_in_sorted_order(fake_stdlib):
    files = {
        "b.py": "b = 2\n",
        "a.py": "a = 1\n",
        "pkg/c.py": "c\n",
        "pkg/z_bad.py": "s = '''open\n",
        "notes.txt": "ignored\n",
        "test/t.py": "skipped_test\n",
        "pkg/tests/t.py": "skipped_tests\n",
        "site-packages/s.py": "skipped_site\n",
        "idlelib/i.py": "skipped_idle\n",
        "lib2to3/l.py": "skipped_2to3\n",
    }
    for rel, text in files.items():
        (fake_stdlib / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake_stdlib / rel).write_text(text)
    everything = corpus.python_stdlib_tokens()
    assert everything == ["a", "=", "<num>", "<nl>", "b", "=", "<num>", "<nl>", "c", "<nl>"]
    assert corpus.python_stdlib_tokens(2) == everything[:8]
    assert corpus.python_stdlib_tokens(10) == everything  # max_files above the file count is fine


def test_stdlib_tokens_errors(fake_stdlib):
    with pytest.raises(ValueError, match="found no readable .py sources"):
        corpus.python_stdlib_tokens()
    with pytest.raises(ValueError, match="does not belong to the running Python"):
        corpus.python_stdlib_tokens(version_check=True)
    with pytest.raises(ValueError, match=r"max_files must be ≥ 1 \(or None"):
        corpus.python_stdlib_tokens(0)
    for bad in (2.5, True, "10"):
        with pytest.raises(TypeError, match="max_files must be None or a positive int"):
            corpus.python_stdlib_tokens(bad)


def test_stdlib_version_check_passes_for_the_running_interpreter():
    assert corpus.python_stdlib_tokens(1, version_check=True) == corpus.python_stdlib_tokens(1)


# --- Vocabulary ------------------------------------------------------------------------------------------

TOY = ["b", "a", "c", "a", "b", "a", "d"]


def test_vocabulary_order_counts_and_unk():
    toy = list(TOY)
    v = Vocabulary.build(toy)
    assert toy == TOY  # input untouched
    assert v.itos == ("<unk>", "a", "b", "c", "d")  # by count, ties (c, d) by string
    assert v.counts.tolist() == [0, 3, 2, 1, 1] and v.counts.dtype == torch.int64
    assert len(v) == 5 and "a" in v and "zzz" not in v
    shuffled = random.Random(0).sample(TOY, len(TOY))
    assert Vocabulary.build(shuffled).itos == v.itos  # independent of token order
    capped = Vocabulary.build(TOY, max_size=3)
    assert capped.itos == ("<unk>", "a", "b") and capped.counts.tolist() == [2, 3, 2]
    frequent = Vocabulary.build(TOY, min_count=2)
    assert frequent.itos == capped.itos and frequent.counts.tolist() == [2, 3, 2]
    assert Vocabulary.build(TOY, max_size=1).itos == ("<unk>",)
    assert Vocabulary.build(["<unk>", "a"]).counts.tolist() == [1, 1]  # a literal <unk> counts toward id 0
    c = v.counts
    c[1] = 99
    assert v.counts[1] == 3  # counts cannot be changed from outside


def test_vocabulary_encode_decode_round_trip(few_tokens):
    v = Vocabulary.build(TOY, max_size=3)
    ids = v.encode(["a", "d", "b", "zzz"])
    assert ids.dtype == torch.int64 and ids.tolist() == [1, 0, 2, 0]
    assert v.decode(ids) == ["a", "<unk>", "b", "<unk>"]
    assert v.decode([2, 1]) == ["b", "a"] and v.decode(torch.tensor([], dtype=torch.int64)) == []
    full = Vocabulary.build(few_tokens)
    ids = full.encode(few_tokens)
    assert full.decode(ids) == few_tokens
    assert int(full.counts.sum()) == len(few_tokens) and full.counts[0] == 0
    assert torch.equal(torch.bincount(ids, minlength=len(full)), full.counts)
    assert (full.counts[1:-1] >= full.counts[2:]).all()  # frequency order
    small = Vocabulary.build(few_tokens, max_size=100)
    ids = small.encode(few_tokens)
    assert torch.equal(torch.bincount(ids, minlength=100), small.counts)
    assert small.counts[0] == len(few_tokens) - small.counts[1:].sum()


def test_vocabulary_errors():
    with pytest.raises(TypeError, match=r"not one string.*tokens.split\(\)"):
        Vocabulary.build("a b c")
    with pytest.raises(TypeError, match="every token must be a str; got int"):
        Vocabulary.build(["a", 3])
    with pytest.raises(ValueError, match="max_size must be ≥ 1; got 0"):
        Vocabulary.build(TOY, max_size=0)
    with pytest.raises(ValueError, match="min_count must be ≥ 1; got 0"):
        Vocabulary.build(TOY, min_count=0)
    v = Vocabulary.build(TOY)
    with pytest.raises(TypeError, match="For ids, use Vocabulary.decode"):
        v.encode(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\); got 5"):
        v.decode([1, 5])
    with pytest.raises(TypeError, match=r"ids must be integers; got float32. Use ids.long\(\)"):
        v.decode(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"ids must be 1-D; got shape \(1, 2\)"):
        v.decode(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="the first token must be '<unk>'"):
        Vocabulary(("a",), [1])


# --- ngram_dataset ---------------------------------------------------------------------------------------


def test_ngram_exact_windows():
    ids = torch.arange(6) * 10
    x, y = ngram_dataset(ids, 2)
    assert x.tolist() == [[0, 10], [10, 20], [20, 30], [30, 40]] and y.tolist() == [20, 30, 40, 50]
    assert x.dtype == y.dtype == torch.int64 and x.is_contiguous()
    x[0, 0] = -1
    y[0] = -1
    assert torch.equal(ids, torch.arange(6) * 10)  # new tensors, not views of ids
    x, y = ngram_dataset(ids, 5)
    assert x.shape == (1, 5) and y.tolist() == [50]
    x, y = ngram_dataset(torch.randint(0, 50, (1000,), generator=torch.Generator().manual_seed(0)), 7)
    assert x.shape == (993, 7) and y.shape == (993,)


def test_ngram_errors():
    ids = torch.arange(5)
    with pytest.raises(ValueError, match="context must be ≥ 1; got 0"):
        ngram_dataset(ids, 0)
    with pytest.raises(ValueError, match="need more than context=5 ids.*got 5"):
        ngram_dataset(ids, 5)
    with pytest.raises(TypeError, match=r"ids must be int64; got int32. Use ids.long\(\)"):
        ngram_dataset(ids.int(), 2)
    with pytest.raises(ValueError, match=r"ids must be 1-D.*got shape \(1, 5\)"):
        ngram_dataset(ids[None], 2)
    with pytest.raises(TypeError, match=r"torch.as_tensor\(ids, dtype=torch.long\)"):
        ngram_dataset([1, 2, 3], 1)
    with pytest.raises(TypeError, match="context must be an int"):
        ngram_dataset(ids, 2.0)


# --- split_ids -------------------------------------------------------------------------------------------


def test_split_sizes_and_contiguity():
    ids = torch.arange(1000)
    train, val, test = split_ids(ids)
    assert (len(train), len(val), len(test)) == (800, 100, 100)
    assert torch.equal(torch.cat([train, val, test]), ids)
    train[0] = -1
    assert ids[0] == 0  # new tensors
    assert [len(p) for p in split_ids(torch.arange(10))] == [8, 1, 1]
    assert [len(p) for p in split_ids(torch.arange(7), (0.5, 0.5))] == [4, 3]  # sizes always add up
    assert [len(p) for p in split_ids(torch.arange(9), (1.0,))] == [9]


def test_split_errors():
    with pytest.raises(ValueError, match="positive and sum to 1"):
        split_ids(torch.arange(10), (0.8, 0.1))
    with pytest.raises(ValueError, match="positive and sum to 1"):
        split_ids(torch.arange(10), (1.2, -0.2))
    with pytest.raises(ValueError, match=r"5 ids are too few .*sizes \[4, 0, 1\]"):
        split_ids(torch.arange(5))
    with pytest.raises(TypeError, match="fractions must be a non-empty sequence"):
        split_ids(torch.arange(10), 0.8)
    with pytest.raises(TypeError, match="ids must be int64"):
        split_ids(torch.arange(10.0))


# --- Zipf Markov chain -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain():
    return ZipfMarkovChain(1000, exponent=1.1, rank=16, coherence=0.8, seed=0)


@pytest.fixture(scope="module")
def stream(chain):
    return chain.sample(200_000, seed=1)


def test_chain_reproducible(chain, stream):
    assert stream.dtype == torch.int64 and stream.shape == (200_000,)
    assert stream.min() >= 0 and stream.max() < 1000
    assert torch.equal(chain.sample(200_000, seed=1), stream)
    assert not torch.equal(chain.sample(200_000, seed=2), stream)
    same = ZipfMarkovChain(1000, exponent=1.1, rank=16, coherence=0.8, seed=0)
    assert torch.equal(same.cluster, chain.cluster) and torch.equal(same.sample(5000, seed=3), chain.sample(5000, seed=3))
    other = ZipfMarkovChain(1000, exponent=1.1, rank=16, coherence=0.8, seed=1)
    assert not torch.equal(other.cluster, chain.cluster)
    a = zipf_markov_chain(500, 3000, rank=8, seed=4)
    assert torch.equal(a, ZipfMarkovChain(500, rank=8, seed=4).sample(3000, seed=4))
    assert torch.equal(a, zipf_markov_chain(500, 3000, rank=8, seed=4))
    assert zipf_markov_chain(10, 0, rank=2, seed=0).shape == (0,)


@pytest.mark.parametrize("exponent", [0.8, 1.1, 1.5])
def test_chain_marginal_is_zipf(exponent):
    # Least-squares slope of log(count) on log(rank) over the 100 most frequent tokens of 200 k samples.
    # Over 20 seeds its standard deviation was ≈ 0.01 at each exponent; the tolerance is 0.05 (5 sd).
    x = zipf_markov_chain(1000, 200_000, exponent=exponent, rank=16, coherence=0.8, seed=0)
    top = torch.bincount(x, minlength=1000).sort(descending=True).values[:100].double().numpy()
    slope = np.polyfit(np.log(np.arange(1, 101)), np.log(top), 1)[0]
    assert abs(slope + exponent) < 0.05, slope


def test_chain_transition_rows_and_stationarity():
    small = ZipfMarkovChain(60, exponent=1.2, rank=5, coherence=0.7, seed=3)
    p = small.transition(torch.arange(60))
    assert p.shape == (60, 60) and p.dtype == torch.float64 and (p > 0).all()
    assert (p.sum(1) - 1).abs().max() < 1e-12
    q = small.unigram
    assert (q @ p - q).abs().max() < 1e-12  # q is stationary
    assert int(torch.linalg.matrix_rank(p)) == int(small.cluster.unique().numel()) <= 5
    nxt = torch.arange(60)
    logp = small.log_prob(torch.arange(60)[:, None], nxt[None, :])
    assert ((logp.exp() - p).abs() / p).max() < 1e-12
    # the entropy rate from its closed form equals the brute-force sum over the dense matrix
    brute = float(-(q[:, None] * p * p.log()).sum())
    assert small.entropy_rate() == pytest.approx(brute, rel=1e-12)
    assert small.entropy_rate() < small.unigram_entropy()
    flat = ZipfMarkovChain(60, exponent=1.2, rank=5, coherence=0.0, seed=3)
    assert flat.entropy_rate() == pytest.approx(flat.unigram_entropy(), rel=1e-12)


def test_chain_empirical_next_token_frequencies(chain, stream):
    q = chain.unigram
    rows = chain.transition(torch.arange(10))
    prev = int((rows - q).abs().sum(1).argmax())  # among the 10 most frequent, the most context-dependent
    after = stream[1:][stream[:-1] == prev]
    n = len(after)
    assert n > 2000
    emp = torch.bincount(after, minlength=1000).double() / n
    p = rows[prev]
    # each frequency within 5 binomial standard errors (+ 1/n for the rarest) of the true row
    se = (p * (1 - p) / n).sqrt()
    assert ((emp - p).abs() <= 5 * se + 1.0 / n).all()
    assert 0.5 * (emp - p).abs().sum() < 0.1 < 0.5 * (emp - q).abs().sum()  # near the row, far from unigram


def test_chain_log_prob_matches_entropy_rate(chain, stream):
    # the true model's cross-entropy on a sample approaches the entropy rate (sd ≈ 0.01 nats at 200 k)
    nll = float(-chain.log_prob(stream[:-1], stream[1:]).mean())
    assert nll == pytest.approx(chain.entropy_rate(), abs=0.05)
    assert chain.entropy_rate() < chain.unigram_entropy() - 0.5


def test_chain_large_vocabulary_is_cheap():
    big = ZipfMarkovChain(1_000_000, rank=64, seed=0)  # O(V) memory: no V×V matrix
    x = big.sample(20_000, seed=0)
    assert x.max() < 1_000_000
    row = big.transition(torch.tensor([7]))
    assert row.shape == (1, 1_000_000) and float(row.sum()) == pytest.approx(1.0, abs=1e-9)
    assert big.log_prob(x[:-1], x[1:]).isfinite().all()


def test_chain_errors(chain):
    with pytest.raises(ValueError, match="vocab_size must be ≥ 2; got 1"):
        ZipfMarkovChain(1, seed=0)
    with pytest.raises(ValueError, match="rank .* must be ≤ vocab_size=10; got 11"):
        ZipfMarkovChain(10, rank=11, seed=0)
    with pytest.raises(ValueError, match="exponent must be a positive number"):
        ZipfMarkovChain(10, rank=2, exponent=0.0, seed=0)
    with pytest.raises(ValueError, match=r"coherence must be in \[0, 1\)"):
        ZipfMarkovChain(10, rank=2, coherence=1.0, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int; got -1"):
        ZipfMarkovChain(10, rank=2, seed=-1)
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        ZipfMarkovChain(10, rank=2, seed=1.5)
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'seed'"):
        ZipfMarkovChain(10, rank=2)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 1000\)"):
        chain.transition(torch.tensor([1000]))
    with pytest.raises(TypeError, match=r"token ids must be integers; got float32. Use ids.long\(\)"):
        chain.log_prob(torch.tensor([1.0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="length must be ≥ 0; got -1"):
        chain.sample(-1, seed=0)
