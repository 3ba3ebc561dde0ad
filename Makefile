# Two commands for a new user:  `make test`  and  `make book`  (each sets up .venv on first use).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CI and this project's machines pin the CPU wheel; `make setup TORCH_CONSTRAINTS=` lets pip choose.
TORCH_CONSTRAINTS ?= constraints-cpu.txt
PIP_CONSTRAINTS := $(if $(TORCH_CONSTRAINTS),-c $(TORCH_CONSTRAINTS),)
JOBS ?= 2
# require.js and the ipywidgets HTML manager for the offline book (see the rule below)
WEB_ASSETS := .web-assets

.PHONY: setup test test-forced test-lib test-notebooks test-golden test-golden-forced test-browser test-lab book notebooks golden clean

setup: $(VENV)/.installed $(WEB_ASSETS)/VERSIONS.json

$(VENV)/.installed: pyproject.toml $(TORCH_CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q $(PIP_CONSTRAINTS) -e ".[dev]"
	# libauc, the AUC-M parity oracle, without its dependencies (they would pull torchvision and another torch)
	$(BIN)/pip install -q --no-deps libauc==2.0.1
	touch $@

# The book's JavaScript that no Python package ships (require.js, the ipywidgets HTML manager), at the
# versions and sha256 sums pinned in _ext/lossbook_pages.py, fetched once with npm; after that the book
# builds and reads offline (MathJax comes from a pip package). Without npm only `make book` fails.
$(WEB_ASSETS)/VERSIONS.json: _ext/lossbook_pages.py | $(VENV)/.installed
	-$(BIN)/python _ext/lossbook_pages.py fetch

# The test command: library tests, then every chapter at smoke scale (papermill) and nbval on the
# committed smoke-scale runs, compared by lossbook.lab.golden (exact, or within the chapter's stated
# tolerance for cells tagged golden-*). pytest's exit code 5 (no tests collected) counts as a failure.
NBVAL := --nbval --nbval-current-env --nbval-cell-timeout=300 --nbval-sanitize-with tests/nbval_sanitize.cfg
PYTEST = $(BIN)/python -m pytest -n $(JOBS) --dist loadscope
NO_TESTS_FAILS = rc=$$?; if [ $$rc -eq 5 ]; then echo "make $@: pytest collected no tests" >&2; exit 1; fi; exit $$rc
test: setup
	$(PYTEST) $(NBVAL) tests; $(NO_TESTS_FAILS)

test-lib: setup
	$(BIN)/python -m pytest -n $(JOBS) tests -m "not notebook"

test-notebooks: setup
	$(PYTEST) $(NBVAL) tests/test_notebooks.py tests/golden; $(NO_TESTS_FAILS)

# The golden comparison alone, and again with torch's, oneDNN's and MKL's CPU dispatch forced down to
# the oldest kernels: other matrix-product kernels, as on another CPU (CI runs both).
FORCED_DISPATCH := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2
test-golden: setup
	$(PYTEST) $(NBVAL) tests/golden; $(NO_TESTS_FAILS)

test-golden-forced: setup
	$(FORCED_DISPATCH) $(PYTEST) $(NBVAL) tests/golden; $(NO_TESTS_FAILS)

# The whole test command with the dispatch forced down (CI runs it after `make test`).
test-forced: setup
	$(FORCED_DISPATCH) $(PYTEST) $(NBVAL) tests; $(NO_TESTS_FAILS)

# The HTML book from the committed notebooks (no execution), warnings as errors.
book: setup
	$(BIN)/lossbook build

# Every page of the built book in headless Chromium with the network blocked: typeset math, drawn
# widgets, loaded images, no console errors, nothing clipped; screenshots in _build/screenshots/.
# Needs `make book` first and a system Chromium (Debian: apt-get install chromium).
test-browser: setup
	$(BIN)/python tests/browser/check_book.py

# Every chapter's widget live in JupyterLab: a local server (random token), headless Chromium with the
# network blocked; each chapter's cells up to its widget run at scale="smoke" in a temporary copy, every
# slider and dropdown is moved once and the plot must change (each redraw's time is printed).
test-lab: setup
	$(BIN)/python tests/browser/check_lab.py

# Re-run every chapter at book scale into notebooks/ (what the rendered book shows).
notebooks: setup
	$(BIN)/lossbook run --scale book --inplace

# Re-make the smoke-scale runs that nbval checks in CI.
golden: setup
	$(BIN)/lossbook run --scale smoke --out tests/golden

clean:
	rm -rf _build
