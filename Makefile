# Two commands for a new user:  `make test`  and  `make book`  (each sets up .venv on first use).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CI and this project's machines pin the CPU wheel; `make setup TORCH_CONSTRAINTS=` lets pip choose.
TORCH_CONSTRAINTS ?= constraints-cpu.txt
PIP_CONSTRAINTS := $(if $(TORCH_CONSTRAINTS),-c $(TORCH_CONSTRAINTS),)
JOBS ?= 2

.PHONY: setup test test-lib test-notebooks book notebooks golden clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(TORCH_CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q $(PIP_CONSTRAINTS) -e ".[dev]"
	touch $@

# The test command: library tests, then every chapter at smoke scale (papermill) and nbval on the
# committed smoke-scale runs. pytest's exit code 5 (no tests collected) counts as a failure.
NBVAL := --nbval --nbval-current-env --nbval-cell-timeout=300 --nbval-sanitize-with tests/nbval_sanitize.cfg
test: setup
	$(BIN)/python -m pytest -n $(JOBS) --dist loadscope $(NBVAL) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-lib: setup
	$(BIN)/python -m pytest -n $(JOBS) tests -m "not notebook"

test-notebooks: setup
	$(BIN)/python -m pytest -n $(JOBS) --dist loadscope $(NBVAL) tests/test_notebooks.py tests/golden

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
