# cohortbench: `make bench` runs the main job, `make test` the tests.
# Everything installs into .venv/ at the repo root; nothing is assumed pre-installed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RESULTS ?= results

.PHONY: install test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

test: install
	$(BIN)/python -m pytest -q

# Each run writes a new results file; results/default-latest.jsonl points at the newest.
bench: install
	@mkdir -p $(RESULTS)
	$(eval STAMP := $(shell date +%Y%m%d-%H%M%S))
	$(BIN)/cohortbench run configs/default.yaml --out $(RESULTS)/default-$(STAMP).jsonl
	ln -sf default-$(STAMP).jsonl $(RESULTS)/default-latest.jsonl

clean:
	rm -rf $(VENV) $(RESULTS) .pytest_cache .benchmarks *.egg-info
