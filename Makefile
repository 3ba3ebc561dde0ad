# Two commands for a new user:  `make test`  and  `make book`  (each sets up .venv on first use).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CI and this project's machines pin the CPU wheel; `make setup TORCH_CONSTRAINTS=` lets pip choose.
TORCH_CONSTRAINTS ?= constraints-cpu.txt
PIP_CONSTRAINTS := $(if $(TORCH_CONSTRAINTS),-c $(TORCH_CONSTRAINTS),)
JOBS ?= 2

.PHONY: setup test test-forced test-lib test-notebooks test-golden test-golden-forced book notebooks golden clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(TORCH_CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q $(PIP_CONSTRAINTS) -e ".[dev]"
	touch $@

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

# Re-run every chapter at book scale into notebooks/ (what the rendered book shows).
notebooks: setup
	$(BIN)/lossbook run --scale book --inplace

# Re-make the smoke-scale runs that nbval checks in CI.
golden: setup
	$(BIN)/lossbook run --scale smoke --out tests/golden

clean:
	rm -rf _build
