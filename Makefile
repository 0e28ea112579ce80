# alinea: `make demo` runs the whole loop on the embedded tiny default; `make test` runs the tests.
# Every target works from a fresh clone: `install` creates .venv and installs the CPU torch wheel first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet "$(TORCH)"
	# dev tools and the benchmark baselines (TRL): the tests exercise the benchmarks too. Runtime needs neither.
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	# TRL 1.12, the last release with a PPOTrainer, in a folder of its own (it cannot sit beside the bench extra's
	# TRL): the baseline of `alinea bench ppo --trl-ppo .venv/trl-1.12`.
	$(BIN)/pip install --quiet --no-deps --upgrade --target $(VENV)/trl-1.12 "trl==1.12.0"
	# Browser tests drive Debian's chromium through Playwright (never a browser download).
	test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }
	touch $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/alinea demo --config configs/tiny.toml

test: install
	HF_HUB_OFFLINE=1 ALINEA_PROGRESS=0 $(BIN)/pytest -q

test-fast: install
	HF_HUB_OFFLINE=1 ALINEA_PROGRESS=0 $(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check src tests

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/alinea bench pretrain --json
	HF_HUB_OFFLINE=1 $(BIN)/alinea bench generate --json

clean:
	rm -rf runs .pytest_cache
