# Two commands a newcomer needs: `make demo` and `make test`. Each installs into .venv
# (idempotent: re-installs only when pyproject.toml or constraints.txt change) and runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
# Local wheel folders some machines carry (e.g. a CPU torch wheel); harmless when absent.
FIND_LINKS := $(foreach d,/opt/wheels,$(if $(wildcard $(d)),--find-links $(d)))

.PHONY: install demo test lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet $(FIND_LINKS) -c constraints.txt -e ".[dev,wandb]"
	# Data/test extras whose own pins (numpy<2, torchvision) would break the env: no deps.
	$(PIP) install --quiet --no-deps -c constraints.txt stlpips-pytorch==0.0.2 scikit-video==1.1.11
	touch $(STAMP)

demo: install
	$(BIN)/framecast demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
