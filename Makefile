# cohortbench: `make bench` runs the main job, `make test` the tests.
# Everything installs into .venv/ at the repo root; nothing is assumed pre-installed.
# The MHE engine's parties run under .venv-mhe/ (CPython 3.12 or 3.10 with OpenFHE,
# made by backends/mhe/make_venv.sh when such an interpreter is found).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
MHE_VENV := .venv-mhe
BIN := $(VENV)/bin
RESULTS ?= results

CI_NEW ?= $(RESULTS)/ci-new.jsonl
COMPARE_FLAGS ?=
REPORT_INPUTS ?= $(RESULTS)/default-latest.jsonl

.PHONY: install install-cluster lint test bench bench-ci bench-micro baseline report clean

install: $(VENV)/.installed $(MHE_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The optional `cluster` extra (Ray): parties on a Ray cluster's nodes; its tests run with it.
install-cluster: $(VENV)/.installed-cluster

$(VENV)/.installed-cluster: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,cluster]'
	touch $@

# Made only where an interpreter runs OpenFHE; elsewhere each `make install` looks again.
$(MHE_VENV)/.installed: backends/mhe/make_venv.sh
	backends/mhe/make_venv.sh $(MHE_VENV) && if [ -x $(MHE_VENV)/bin/python ]; then touch $@; fi

# ruff (lint and format) on the whole tree, mypy on the IR and the engines.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy circuits backends

test: install lint
	$(BIN)/python -m pytest -q

# Each run writes a new results file; results/default-latest.jsonl points at the newest.
bench: install
	@mkdir -p $(RESULTS)
	$(eval STAMP := $(shell date +%Y%m%d-%H%M%S))
	$(BIN)/cohortbench run configs/default.yaml --out $(RESULTS)/default-$(STAMP).jsonl
	ln -sf default-$(STAMP).jsonl $(RESULTS)/default-latest.jsonl
	@if $(BIN)/cohortbench doctor --quiet --engine mp-spdz; then \
	  $(BIN)/cohortbench run configs/bench-mp-spdz.yaml --out $(RESULTS)/bench-mp-spdz-$(STAMP).jsonl; \
	else echo "MP-SPDZ not found: ran the MPyC grid only (see 'cohortbench doctor' for the fix)"; fi

# The CI grid, compared with the committed baseline: exit 1 on a regression.
bench-ci: install
	@mkdir -p $(RESULTS)
	rm -rf $(CI_NEW) $(CI_NEW:.jsonl=.runs)
	-$(BIN)/cohortbench run configs/ci.yaml --out $(CI_NEW)
	$(BIN)/cohortbench compare $(COMPARE_FLAGS) baselines/ci.jsonl $(CI_NEW)

# pytest-benchmark micro-benchmarks (extraction, generation, code generation, relay),
# saved as JSON under .benchmarks/ and compared with the previous save.
bench-micro: install
	$(BIN)/python -m pytest -q tests/test_bench_data.py tests/test_bench_codegen.py \
	  tests/test_bench_relay.py --benchmark-enable --benchmark-autosave --benchmark-compare \
	  --benchmark-columns=min,median,max,rounds

# Refresh the baseline and record why: make baseline REASON="..."
baseline: install
	@test -n "$(REASON)" || { echo 'usage: make baseline REASON="why the baseline changes"' >&2; exit 2; }
	rm -rf baselines/ci.new.jsonl baselines/ci.new.runs
	$(BIN)/cohortbench run configs/ci.yaml --out baselines/ci.new.jsonl
	mv baselines/ci.new.jsonl baselines/ci.jsonl
	rm -rf baselines/ci.new.runs
	printf '| %s | %s | %s |\n' "$$(git rev-parse --short=12 HEAD)$$(git diff --quiet HEAD -- . ':!baselines' || echo -dirty)" "$$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(REASON)" >> baselines/README.md

# Plots, CSV and one HTML page from the latest `make bench` (REPORT_INPUTS to choose).
report: install
	$(BIN)/cohortbench report $(REPORT_INPUTS) --out $(RESULTS)/report

clean:
	rm -rf $(VENV) $(MHE_VENV) $(RESULTS) .pytest_cache .benchmarks *.egg-info
