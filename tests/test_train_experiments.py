"""The training loop, experiment grids, verdict rules, claims tables, and the book/CLI plumbing."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import lossbook
from lossbook import cli, metrics
from lossbook.lab import book, data, experiments, train
from lossbook.lab.experiments import CLAIMS_KEY, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

# --- training ---------------------------------------------------------------------------------------


def _blobs(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    return centres[y] + 0.5 * torch.randn(n, 2, generator=g), y


def _fit(seed=0, loss=None, **kwargs):
    x, y = _blobs()
    train.set_seed(seed)
    model = train.mlp(2, 3)
    options = {"epochs": 6, "batch_size": 32, "lr": 0.05, "seed": seed, "device": "cpu", "progress": False, **kwargs}
    return model, train.fit(model, loss or lossbook.CrossEntropyLoss(), x, y, **options)


def test_fit_reduces_training_loss_on_separable_data():
    model, history = _fit()
    losses = history.frame()["train_loss"].to_numpy()
    assert np.isnan(losses[0])  # the row before training has no training loss
    assert losses[-1] < 0.5 * losses[1]
    assert losses[-1] < 0.1
    x, y = _blobs(seed=1)
    assert metrics.accuracy(train.predict_logits(model, x), y) > 0.95


def test_fit_is_reproducible():
    m1, h1 = _fit(seed=3)
    m2, h2 = _fit(seed=3)
    pd.testing.assert_frame_equal(h1.frame(), h2.frame())
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    _, h3 = _fit(seed=4)
    assert not h3.frame()["train_loss"].iloc[1:].equals(h1.frame()["train_loss"].iloc[1:])


def test_fit_evaluate_callback_rows():
    calls = []

    def evaluate(model):
        calls.append(model.training)
        return {"probe": len(calls)}

    _, history = _fit(epochs=5, eval_every=2, evaluate=evaluate)
    frame = history.frame()
    assert list(frame.columns) == ["epoch", "step", "train_loss", "probe"]
    assert frame["epoch"].tolist() == [0, 2, 4, 5]  # before training, every 2nd epoch, and the last
    assert frame["step"].tolist() == [0, 8, 16, 20]  # 120 rows / batch 32 → 4 steps an epoch
    assert frame["probe"].tolist() == [1, 2, 3, 4]
    assert history.last("epoch") == 5


def test_fit_adam_and_callable_optimizer():
    _, h_adam = _fit(optimizer="adam", lr=0.05)
    _, h_call = _fit(optimizer=lambda params: torch.optim.SGD(params, lr=0.05))
    assert h_adam.last("train_loss") < 0.2 and h_call.last("train_loss") < h_call.records[1]["train_loss"]


def test_fit_cosine_schedule_and_nesterov():
    def weights(**kwargs):
        model, _ = _fit(**kwargs)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    plain = weights()
    assert torch.equal(weights(lr_min=0.05), plain)  # a floor equal to lr leaves the rate constant
    decayed = weights(lr_min=0.0)
    assert not torch.allclose(decayed, plain)
    # the cosine only lowers the rate, so the weights move less from their (shared) initial values
    train.set_seed(0)
    start = torch.cat([p.detach().flatten() for p in train.mlp(2, 3).parameters()])
    assert (decayed - start).norm() < (plain - start).norm()
    assert not torch.allclose(weights(nesterov=True), plain)


def test_train_classifier_history_and_fit_options():
    splits = data.load_digits()
    seen = []
    _, out = train.train_classifier(lossbook.CrossEntropyLoss(), splits, epochs=4, eval_every=2, device="cpu",
                                    progress=False, evaluate=lambda m: {"n": len(seen.append(1) or seen)},
                                    nesterov=True, lr_min=0.005)
    assert out["history"]["epoch"].tolist() == [0, 2, 4] and out["history"]["n"].tolist() == [1, 2, 3]
    _, plain = train.train_classifier(lossbook.CrossEntropyLoss(), splits, epochs=4, device="cpu", progress=False)
    assert "history" not in plain and plain["train_loss"] != out["train_loss"]  # the fit options reached fit


@pytest.mark.parametrize("kwargs, exc, pattern", [
    ({"epochs": -1}, ValueError, "epochs must be ≥ 0"),
    ({"lr_min": 0.5}, ValueError, r"lr_min must lie in \[0, lr\]"),
    ({"nesterov": True, "optimizer": "adam"}, ValueError, "nesterov=True needs optimizer='sgd'"),
    ({"batch_size": 0}, ValueError, "batch_size ≥ 1"),
    ({"optimizer": "rmsprop"}, ValueError, "optimizer must be 'sgd', 'adam' or a callable"),
    # the sum-exponential loss overflows to inf once the logits blow up
    ({"lr": 1e6, "loss": lossbook.SumExponentialLoss()}, FloatingPointError, r"training loss became (inf|nan)"),
])
def test_fit_errors(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _fit(**kwargs)


def test_fit_length_mismatch():
    x, y = _blobs()
    with pytest.raises(ValueError, match="same length"):
        train.fit(train.mlp(2, 3), lossbook.CrossEntropyLoss(), x, y[:-1], epochs=1, device="cpu", progress=False)


def test_fit_on_device(device):
    x, y = _blobs()
    model = train.mlp(2, 3)
    train.fit(model, lossbook.CrossEntropyLoss(), x, y, epochs=1, device=device, progress=False)
    assert next(model.parameters()).device.type == device.type


@pytest.mark.parametrize("hidden, n_linear", [((), 1), ((8,), 2), ((8, 16), 3)])
def test_mlp_shapes(hidden, n_linear):
    model = train.mlp(5, 3, hidden)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert len(linears) == n_linear and len(model) == 2 * n_linear - 1
    assert [(m.in_features, m.out_features) for m in linears] == list(zip((5, *hidden), (*hidden, 3)))
    assert model(torch.randn(7, 5)).shape == (7, 3)
    assert not isinstance(model[-1], torch.nn.ReLU)


def test_predict_logits_restores_mode_and_matches_model():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Dropout(0.5))
    model.train()
    x = torch.randn(10, 2)
    out = train.predict_logits(model, x, batch_size=3)
    assert model.training
    model.eval()
    torch.testing.assert_close(out, model(x))


def test_get_device():
    assert train.get_device("cpu") == torch.device("cpu")
    assert train.get_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert train.get_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_get_device_cuda_unavailable(name):
    with pytest.raises(ValueError, match=rf"'{name}' was asked for but CUDA is not available"):
        train.get_device(name)


def test_set_seed_and_progress_switch(monkeypatch):
    g = train.set_seed(7)
    a = torch.rand(3)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(7)))
    train.set_seed(7)
    assert torch.equal(torch.rand(3), a)
    monkeypatch.setenv("LOSSBOOK_PROGRESS", "0")
    assert train.progress_enabled() is False and train.progress_enabled(True) is True
    monkeypatch.setenv("LOSSBOOK_PROGRESS", "1")
    assert train.progress_enabled() is True


# --- run_grid / summarize ------------------------------------------------------------------------------


def test_run_grid_dict_rows():
    seen = []

    def fn(seed, lr, loss):
        seen.append((seed, lr, loss))
        return {"acc": lr * 10 + seed, "loss_name": loss}

    df = experiments.run_grid(fn, seeds=[0, 1, 2], lr=[0.1, 0.2], loss=["ce", "mae"], progress=False)
    assert list(df.columns) == ["lr", "loss", "seed", "acc", "loss_name"]
    assert len(df) == 2 * 2 * 3 == len(seen)
    assert (df["loss"] == df["loss_name"]).all()
    np.testing.assert_allclose(df["acc"], df["lr"] * 10 + df["seed"])
    assert set(map(tuple, df[["lr", "loss", "seed"]].to_numpy().tolist())) == {
        (lr, loss, s) for s, lr, loss in seen}


def test_run_grid_list_rows():
    df = experiments.run_grid(lambda seed, k: [{"step": i, "v": seed + k * i} for i in range(4)],
                              seeds=range(2), k=[1, 10], progress=False)
    assert list(df.columns) == ["k", "seed", "step", "v"]
    assert len(df) == 2 * 2 * 4
    np.testing.assert_array_equal(df["v"], df["seed"] + df["k"] * df["step"])


def test_run_grid_errors():
    with pytest.raises(TypeError, match="axis 'loss' must be a sequence"):
        experiments.run_grid(lambda seed, loss: {}, seeds=[0], loss="ce", progress=False)
    with pytest.raises(ValueError, match="seeds must not be empty"):
        experiments.run_grid(lambda seed: {}, seeds=[], progress=False)


def test_summarize_ci_matches_scipy():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"loss": ["a"] * 5 + ["b"] * 3 + ["c"], "acc": rng.normal(size=9)})
    out = experiments.summarize(df, "loss", "acc", confidence=0.9).set_index("loss")
    for name, group in df.groupby("loss"):
        v = group["acc"].to_numpy()
        assert out.loc[name, "n"] == len(v)
        assert out.loc[name, "mean"] == pytest.approx(v.mean())
        if len(v) > 1:
            lo, hi = stats.t.interval(0.9, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
            assert out.loc[name, "ci_low"] == pytest.approx(lo, rel=1e-12)
            assert out.loc[name, "ci_high"] == pytest.approx(hi, rel=1e-12)
            assert out.loc[name, "std"] == pytest.approx(v.std(ddof=1))
    assert np.isnan(out.loc["c", "ci_low"]) and np.isnan(out.loc["c", "std"])


def test_summarize_by_several_columns():
    df = pd.DataFrame({"a": [1, 1, 2, 2], "b": ["x", "x", "x", "x"], "m": [1.0, 3.0, 5.0, 9.0]})
    out = experiments.summarize(df, ["a", "b"], "m")
    assert list(out.columns[:2]) == ["a", "b"]
    assert out["mean"].tolist() == [2.0, 7.0] and out["n"].tolist() == [2, 2]


# --- verdicts -----------------------------------------------------------------------------------------------

BASE = np.array([0.80, 0.82, 0.79, 0.81, 0.83])
JITTER = np.array([0.001, -0.002, 0.0015, -0.001, 0.0005])


@pytest.mark.parametrize("a, expected", [
    (BASE + 0.05 + JITTER, SUPPORTED),  # clearly better
    (BASE - 0.05 + JITTER, NOT_SUPPORTED),  # clearly worse
    (BASE + np.array([0.05, -0.05, 0.04, -0.04, 0.0]), INCONCLUSIVE),  # noisy, CI straddles 0
])
def test_verdict_greater(a, expected):
    v = experiments.verdict_greater(a, BASE, names=("new", "old"))
    assert v.verdict == expected
    assert v.measured.startswith("new ") and "vs old" in v.measured and "(n=5)" in v.measured
    assert "95% CI" in v.rule


def test_verdict_greater_margin():
    a = BASE + 0.02 + JITTER
    assert experiments.verdict_greater(a, BASE).verdict == SUPPORTED
    assert experiments.verdict_greater(a, BASE, margin=0.05).verdict == NOT_SUPPORTED


@pytest.mark.parametrize("a, expected", [
    (BASE - 0.002 + JITTER, SUPPORTED),  # loss within the tolerance
    (BASE - 0.10 + JITTER, NOT_SUPPORTED),  # worse by far more than the tolerance
    (BASE + np.array([0.05, -0.08, 0.04, -0.06, 0.0]), INCONCLUSIVE),
])
def test_verdict_equivalent(a, expected):
    assert experiments.verdict_equivalent(a, BASE, tolerance=0.01).verdict == expected


def test_verdict_all():
    assert experiments.verdict_all([True, True, True], what="x").verdict == SUPPORTED
    no = experiments.verdict_all(np.array([[True, False], [True, True]]), what="monotone")
    assert no.verdict == NOT_SUPPORTED and no.measured == "monotone: holds in 3 of 4 checks"
    assert experiments.verdict_all([True, True], what="x", min_checks=3).verdict == INCONCLUSIVE
    assert experiments.verdict_all([], what="x").verdict == INCONCLUSIVE


@pytest.mark.parametrize("a, b", [([1.0, 2.0, 3.0], [1.0, 2.0]), ([1.0], [2.0]), ([[1.0, 2.0]], [[1.0, 2.0]])])
def test_verdicts_reject_unpaired_inputs(a, b):
    for rule in (experiments.verdict_greater, lambda a, b: experiments.verdict_equivalent(a, b, tolerance=0.1)):
        with pytest.raises(ValueError, match="paired 1-D samples"):
            rule(a, b)


def test_verdict_rejects_unknown_verdict():
    with pytest.raises(ValueError, match="unknown verdict 'probably'"):
        experiments.Verdict("probably", "m", "r")


# --- claims ---------------------------------------------------------------------------------------------------


def _rows():
    v1 = experiments.verdict_greater(BASE + 0.05 + JITTER, BASE)
    v2 = experiments.verdict_all([True, False], what="bounded")
    return [
        experiments.claim(paper="mao2023crossentropy", claim="Comp-sum losses are consistent.", setting="digits",
                          result=v1),
        experiments.claim(paper="ghosh2017robust", claim="MAE is <robust> & noise-tolerant.", setting="20% noise",
                          result=v2),
    ]


def test_claim_row_keys():
    row = _rows()[0]
    assert list(row) == ["paper", "claim", "setting", "verdict", "measured", "rule"]
    assert row["verdict"] == SUPPORTED and row["paper"] == "mao2023crossentropy"
    with pytest.raises(ValueError, match="quote the paper's claim exactly"):
        experiments.claim(paper="p", claim="  ", setting="s", result=experiments.verdict_all([True], what="x"))


def test_claims_table_mimebundle():
    rows = _rows()
    bundle, metadata = experiments.claims_table(rows, chapter="01_softmax")._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"}
    assert "lossbook-claims" in bundle["text/html"]
    assert "&lt;robust&gt; &amp;" in bundle["text/html"]  # escaped
    payload = metadata[CLAIMS_KEY]
    assert payload["chapter"] == "01_softmax"
    assert payload["rows"] == [{k: r[k] for k in ("paper", "claim", "setting", "measured", "verdict", "rule")}
                               for r in rows]
    json.dumps(payload)  # serialisable as a notebook output


def test_collect_claims_reads_executed_notebooks(tmp_path):
    bundle, metadata = experiments.claims_table(_rows(), chapter="03_robust")._repr_mimebundle_()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("claims_table(rows, chapter='03_robust')")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="hello\n"),
        nbformat.v4.new_output("display_data", data=bundle, metadata=metadata),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Robust"), cell]
    nbformat.validate(nb)
    nbformat.write(nb, tmp_path / "03_robust.ipynb")
    nbformat.write(nb, tmp_path / "scratch.ipynb")  # not a chapter: ignored
    empty = nbformat.v4.new_notebook()
    empty.cells = [nbformat.v4.new_code_cell("1 + 1")]
    nbformat.write(empty, tmp_path / "01_intro.ipynb")

    df = book.collect_claims(tmp_path)
    assert list(df.columns) == ["chapter", "paper", "claim", "setting", "measured", "verdict", "rule"]
    assert len(df) == 2
    assert df["chapter"].tolist() == ["03_robust", "03_robust"]
    assert df["verdict"].tolist() == [SUPPORTED, NOT_SUPPORTED]
    assert df["paper"].tolist() == ["mao2023crossentropy", "ghosh2017robust"]
    assert book.collect_claims(tmp_path / "nothing_here").empty


@pytest.fixture
def fake_book(tmp_path):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    nb = tmp_path / "notebooks"
    nb.mkdir()
    for name in ("01_softmax.ipynb", "02_spherical.ipynb", "report_card.ipynb", "scratch.ipynb"):
        nbformat.write(nbformat.v4.new_notebook(), nb / name)
    return tmp_path


def test_resolve_chapters(fake_book):
    nb = fake_book / "notebooks"
    assert book.chapters(fake_book) == [nb / "01_softmax.ipynb", nb / "02_spherical.ipynb", nb / "report_card.ipynb"]
    assert book.resolve_chapters([], fake_book) == book.chapters(fake_book)
    assert book.resolve_chapters(["02", "01_softmax", "notebooks/report_card.ipynb"], fake_book) == [
        nb / "02_spherical.ipynb", nb / "01_softmax.ipynb", nb / "report_card.ipynb"]
    assert book.repo_root(nb) == fake_book.resolve()


@pytest.mark.parametrize("name", ["99", "softmax", "0"])
def test_resolve_chapters_unknown_name(fake_book, name):
    with pytest.raises(ValueError, match=rf"no single chapter matches '{name}'; chapters are 01_softmax, 02_spherical"):
        book.resolve_chapters([name], fake_book)


def test_run_chapter_rejects_bad_scale(tmp_path):
    with pytest.raises(ValueError, match="scale must be one of"):
        book.run_chapter(tmp_path / "01_x.ipynb", tmp_path / "out.ipynb", scale="huge")


def test_clean_metadata(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1")
    cell.metadata["papermill"] = {"duration": 1.0}
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nb.metadata["papermill"] = {"duration": 3.0, "parameters": {"scale": "smoke"}}
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    book.clean_metadata(path)
    out = json.loads(path.read_text())
    assert out["cells"][0]["metadata"] == {"tags": ["parameters"]}
    assert out["metadata"]["papermill"] == {"parameters": {"scale": "smoke"}}


# --- CLI --------------------------------------------------------------------------------------------------------


def test_cli_list_prints_every_loss(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("Registered losses") and lines[1].split()[:3] == ["loss", "family", "paper"]
    for name in lossbook.list_losses():
        assert name in out
    for name in lossbook.list_methods():  # then the heads, layers, transforms and other methods
        assert name in out
    assert "tau=1.0" in out


def test_cli_list_family(capsys):
    assert cli.main(["list", "--family", "softmax"]) == 0
    assert "comp_sum" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["list", "--family", "nonsense"])


def test_cli_claims_on_an_empty_folder(tmp_path, capsys):
    assert cli.main(["claims", str(tmp_path)]) == 0
    assert "no claims found" in capsys.readouterr().out


def test_claims_html_renders_every_claim_escaped():
    df = pd.DataFrame([{"chapter": "01_x", **r} for r in _rows()])
    html = book.claims_html(df)
    assert html.count('class="lossbook-claim"') == len(df)
    for verdict in df["verdict"]:
        assert verdict in html
    assert "&lt;robust&gt; &amp;" in html and "<robust>" not in html


def test_claims_html_links_paper_keys_and_marks_blocks_for_the_filter():
    df = pd.DataFrame([{"chapter": "01_x", **r} for r in _rows()])
    html = book.claims_html(df)
    first = html.split("\n")[0]
    key = df["paper"].iloc[0]
    assert f'<a href="../bibliography.html#{book.bibliography_anchor(key)}"><code>{key}</code></a>' in first
    assert f'data-chapter="01_x" data-verdict="{df["verdict"].iloc[0]}"' in first
    assert "<a href" not in book.claims_html(df, bibliography=None)
    assert book.bibliography_anchor("Ma2020_Normalized") == "cite-ma2020-normalized"  # docutils' id rules


def test_claims_filter_lists_chapters_and_present_verdicts_and_hides_without_javascript():
    df = pd.DataFrame([{"chapter": c, **r} for c, r in zip(["02_b", "01_a", "01_a"], _rows())])
    html = book.claims_filter_html(df)
    assert html.startswith('<div class="lossbook-filter" style="display:none')  # shown by the script only
    assert html.index('value="01_a"') < html.index('value="02_b"')
    for verdict in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE):
        assert (f'value="{verdict}"' in html) == (verdict in set(df["verdict"]))
    assert "premise absent" not in html


def test_verdict_digest_lists_keys_per_chapter_and_verdict():
    rows = _rows()
    df = pd.DataFrame([{"chapter": "01_a", **rows[0]}, {"chapter": "01_a", **rows[0]}, {"chapter": "02_b", **rows[1]}])
    digest = book.verdict_digest(df)
    assert list(digest.index) == ["01_a", "02_b"] and digest.loc["01_a", "claims"] == 2
    assert digest.loc["01_a", rows[0]["verdict"]] == f"{rows[0]['paper']} ×2"
    assert digest.loc["02_b", rows[1]["verdict"]] == rows[1]["paper"]


def test_clean_metadata_hides_injected_parameters(tmp_path):
    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell("scale = 'smoke'")
    injected.metadata["tags"] = ["injected-parameters"]
    injected.metadata["papermill"] = {"duration": 0.1}
    nb.cells = [injected, nbformat.v4.new_code_cell("1")]
    nbformat.write(nb, tmp_path / "x.ipynb")
    book.clean_metadata(tmp_path / "x.ipynb")
    cells = json.loads((tmp_path / "x.ipynb").read_text())["cells"]
    assert cells[0]["metadata"]["tags"] == ["injected-parameters", "remove-cell"]
    assert "papermill" not in cells[0]["metadata"] and "tags" not in cells[1]["metadata"]


def test_verdict_any_combines_settings():
    yes = experiments.Verdict(SUPPORTED, "a", "r")
    no = experiments.Verdict(NOT_SUPPORTED, "b", "r")
    maybe = experiments.Verdict(INCONCLUSIVE, "c", "r")
    assert experiments.verdict_any({"k=1": no, "k=5": yes}).verdict == SUPPORTED
    assert experiments.verdict_any({"k=1": no, "k=5": no}).verdict == NOT_SUPPORTED
    assert experiments.verdict_any({"k=1": no, "k=5": maybe}).verdict == INCONCLUSIVE
    assert "k=5: b" in experiments.verdict_any({"k=1": no, "k=5": no}).measured
    with pytest.raises(ValueError):
        experiments.verdict_any({})


def test_verdict_every_combines_settings():
    yes = experiments.Verdict(SUPPORTED, "a", "r")
    no = experiments.Verdict(NOT_SUPPORTED, "b", "r")
    maybe = experiments.Verdict(INCONCLUSIVE, "c", "r")
    assert experiments.verdict_every({"60%": yes, "80%": yes}).verdict == SUPPORTED
    assert experiments.verdict_every({"60%": yes, "80%": no}).verdict == NOT_SUPPORTED
    assert experiments.verdict_every({"60%": no, "80%": maybe}).verdict == NOT_SUPPORTED
    assert experiments.verdict_every({"60%": yes, "80%": maybe}).verdict == INCONCLUSIVE
    assert "80%: b → not supported" in experiments.verdict_every({"60%": yes, "80%": no}).measured
    with pytest.raises(ValueError):
        experiments.verdict_every({})


def test_by_seed_orders_by_seed_and_guards_the_selection():
    df = pd.DataFrame({"loss": ["A", "B", "A", "B"], "rate": [0.1, 0.1, 0.1, 0.1], "seed": [1, 1, 0, 0],
                       "acc": [0.5, 0.6, 0.7, 0.8]})
    np.testing.assert_array_equal(experiments.by_seed(df, "acc", loss="A"), [0.7, 0.5])
    np.testing.assert_array_equal(experiments.by_seed(df, "acc", loss="B", rate=0.1), [0.8, 0.6])
    np.testing.assert_array_equal(experiments.by_seed(df, ["acc", "rate"], loss="A"), [[0.7, 0.1], [0.5, 0.1]])
    with pytest.raises(ValueError, match="several rows per seed"):
        experiments.by_seed(df, "acc", rate=0.1)
    with pytest.raises(ValueError, match="no row has"):
        experiments.by_seed(df, "acc", loss="C")
    with pytest.raises(ValueError, match=r"no column \['lr'\]"):
        experiments.by_seed(df, "acc", lr=0.1)
