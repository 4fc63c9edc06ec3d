# The quick start on a fresh clone: `make demo` sets everything up and checks the example checkpoint;
# `make test` sets up (if not done yet) and runs the tests. Nothing needs activating: every command
# runs from .venv. Bring your own CUDA torch with `make TORCH=torch demo` (or install it into .venv first).

PYTHON ?= python3
VENV   ?= .venv
# torch first, pinned to the CPU build this project's machines carry, so nothing pulls the CUDA wheels.
TORCH  ?= torch==2.13.0
EXTRAS ?= dev,s3,gcs,azure
# Azurite (the Azure Blob emulator; 3.35 is the last to support Node 20) for tests/test_azure.py, next
# to the venv so it is never committed. Without npm those tests skip with the reason.
AZURITE ?= azurite@3.35.0
PYTEST_ARGS ?=

BIN   := $(VENV)/bin
STAMP := $(VENV)/.nemoverify-installed
# The venv's commands first on PATH, as an activated venv would have them: the object-storage tests
# start moto_server and gcp-storage-emulator by name.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup demo test lint validate clean harness-setup

setup: $(STAMP)

# Re-installs when pyproject.toml changes; an existing .venv is reused, not rebuilt.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '$(TORCH)'
	# compat: a plain path in a .pth; the default editable finder costs every process 18 ms of imports
	# before the package's first line runs (and takes Ctrl-C). setuptools calls compat transitional:
	# where it is gone, the default.
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]' --config-settings editable_mode=compat \
	  || $(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	if command -v npm >/dev/null; then npm install -q --no-audit --no-fund --prefix $(VENV)/azurite $(AZURITE); fi
	touch $(STAMP)

demo: setup
	$(BIN)/nemoverify check examples/nano-omni-tiny

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check nemoverify tests benchmarks examples harness
	$(BIN)/mypy nemoverify

# The CI files and the composite action, against the schemas check-jsonschema carries (offline).
validate: setup
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows examples/ci/github-actions.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-actions action.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.gitlab-ci examples/ci/gitlab-ci.yml

# The differential harness's two interpreters (docs/harness.md), under .harness/ (never committed): the
# same packages with runai-model-streamer 0.17.1 and 0.16.1. Pinned, because they decide the cells:
# transformers builds Parakeet's parameters, the streamer and torch stream and copy the tensors.
HARNESS_PACKAGES := safetensors==0.8.0 transformers==5.24.0 tqdm regex xxhash blake3 rich 'typer>=0.29,<0.30'
HARNESS_STREAMER_venv := 0.17.1
HARNESS_STREAMER_venv16 := 0.16.1

harness-setup: .harness/venv/.installed .harness/venv16/.installed

.harness/%/.installed: Makefile
	test -x .harness/$*/bin/python || $(PYTHON) -m venv .harness/$*
	.harness/$*/bin/python -m pip install -q '$(TORCH)' 'runai-model-streamer==$(HARNESS_STREAMER_$*)' $(HARNESS_PACKAGES)
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info
