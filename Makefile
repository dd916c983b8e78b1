# dawnchorus: `make demo` runs the whole workflow on generated demo data, `make test` the tests.
# Everything installs into .venv from the package registries; nothing else is needed but Python 3.11.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_DATA ?= data/demo
CORES ?= all
# EfficientNet-B0 on 32x256 demo images keeps only about one core busy: two folds (of a round)
# side by side, one thread each, train the demo in two thirds of the time. The demo's
# pseudo-labelling, export and soundscape-ablation jobs mostly load and trace fold models on one
# thread: two at a time as well (export and ablation side by side: the tail 57 s instead of 88).
# predict (the TFLite export and BirdNET, one thread each in turn) then runs beside the ablation.
DEMO_THREADS ?= --set-threads train_fold=1 train_round_fold=1 pseudo_labels=1 export=1 soundscape_ablation=1 predict=1

.PHONY: venv demo demo-data test test-fast bench lint clean

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dawnchorus needs Python 3.11 or newer: make PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,birdnet,onnx,openvino]'
	touch $@

# train.csv is written last, so an interrupted generation is redone
demo-data: $(DEMO_DATA)/train.csv

$(DEMO_DATA)/train.csv: | $(INSTALLED)
	$(BIN)/dawnchorus demo-data $(DEMO_DATA)

demo: venv demo-data
	$(BIN)/snakemake --configfile config/demo.yaml --cores $(CORES) $(DEMO_THREADS)
	$(BIN)/snakemake --configfile config/demo.yaml --report results/demo/report.html

# Two test processes, each taking whole test files (the SLURM tests share one cluster and one
# run): those spend most of their time waiting for the scheduler while the other process trains.
# Files go in the order tests/conftest.py gives them: the debug DAG's run, shared by the tests
# that read or copy it, starts first.
test: venv
	$(BIN)/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder

# The inner loop: no Keras training or model export, no Snakemake run (a few minutes at most).
test-fast: venv
	$(BIN)/python -m pytest -n 2 -m "not training and not workflow"

# the inference benchmark's peer, BirdNET, comes with the venv's `birdnet` extra
bench: venv
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python benchmarks/inference.py
	$(BIN)/python benchmarks/embeddings.py

lint: venv demo-data
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint --configfile config/debug.yaml
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf results .snakemake
