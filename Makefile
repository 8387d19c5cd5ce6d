# Quick start: `make demo` and `make test` on a fresh clone; each sets up .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-all lint bench check-wheel clean

# Reinstall when the dependency list or the constraints change. The constraints pin torch to the CPU build;
# without them pip would pull several GB of CUDA packages.
$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints-cpu.txt -e '.[dev,peers,onnx,openvino]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	PYTHON=$(abspath $(BIN)/python) bash scripts/demo.sh

lint: setup
	$(BIN)/ruff check .

# The default run leaves out the tests marked slow (multi-process equivalence, the longer end-to-end pipelines and
# rounds): about 4-5 minutes on 2 cores. test-all runs every test (about 12).
test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

test-all: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider

# A wheel of this tree in a new virtual environment: each command's --help, and the pipeline on a tiny BEIR folder
# outside the checkout (what a user gets from pip install).
check-wheel: setup
	PYTHON=$(abspath $(BIN)/python) bash scripts/check_wheel.sh

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache *.egg-info
