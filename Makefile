# medcap: the two commands a newcomer needs are `make reproduce` and `make test`.
# Both create .venv when it is missing and install everything the project needs into it.

PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
# The project's one command ([project.scripts] in pyproject.toml; `$(MEDCAP) --help` lists its commands).
MEDCAP     := $(VENV)/bin/medcap
PIP        := $(PY) -m pip
# The tested torch build. Installed on its own first so that pip never resolves an unpinned torch
# (on a CPU-only machine that would download several GB of CUDA libraries).
TORCH_VERSION ?= 2.13.0
# Exact versions of everything installed (the tested set); LOCK= (empty) resolves the newest allowed.
LOCK       ?= requirements-lock.txt
PROFILE    ?= demo
DATA       ?=
# Offline by design: no model or dataset hub is contacted by the demo profile or the tests.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false
# No MPLBACKEND here: kernels draw figures inline (ipykernel's default; medcap_utils.runner.reproduce sets it for papermill),
# tests/conftest.py gives pytest Agg, and scripts without a display fall back to Agg by themselves.

.PHONY: help env lab badges reproduce repeat-check claims lint test test-unit test-notebooks smoke smoke-fixtures models lock test-latest demo-data \
        clean-reports java chromium bench-gpu

help:
	@echo "make reproduce [PROFILE=demo|rocov2|rocov2-subset] [DATA=/path]  execute every notebook"
	@echo "make test                                   lint + unit tests + nbval (demo) + the rocov2 smoke run"
	@echo "make lint                                   ruff check (pyproject.toml [tool.ruff])"
	@echo "make claims                                each paper's claims with measured verdicts -> reports/claims/"
	@echo "make repeat-check [PROFILE=demo]           run the profile twice from scratch; every metric and weight must match"
	@echo "make lab                                    JupyterLab on the project's kernel, in notebooks/"
	@echo "make badges                                 rewrite every notebook's Colab badge and setup cell from pyproject.toml"
	@echo "make smoke                                  all notebooks through the rocov2 code path, offline, tiny stand-ins"
	@echo "make models PROFILE=rocov2                  download every checkpoint a profile names (needs network)"
	@echo "make lock | make test-latest                rewrite the lock from .venv | test the newest allowed versions"
	@echo "$(MEDCAP) --help                     the commands behind these targets (data, train, caption, evaluate, ...)"
	@echo "make bench-gpu [BENCH_PY=python3] [BENCH_ARGS=..] [CURVES_ARGS=..]  issue 6's GPU benchmarks and loss curves"

$(VENV)/.installed: pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q $(if $(LOCK),-c $(LOCK),) -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(PY) -m ipykernel install --user --name medcap --display-name "medcap (.venv)" >/dev/null  # seen by a Jupyter you already have
	@touch $@

env: $(VENV)/.installed java

# METEOR and the PTB tokenizer of pycocoevalcap run on Java.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "java not found: installing default-jre-headless"; \
	  (apt-get update -qq && apt-get install -y -qq default-jre-headless) >/dev/null 2>&1 || \
	  echo "WARNING: could not install Java; METEOR will be reported as unavailable"; }

# Headless Chromium and its driver for the explorer's browser test (tests/test_explorer_browser.py skips without them).
chromium:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  echo "chromium/chromedriver not found: installing chromium chromium-driver"; \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 || \
	  echo "WARNING: could not install Chromium; the explorer's browser test will be skipped"; }

# JupyterLab from .venv, opened on notebooks/ (LAB_ARGS=--no-browser --port 8889 on a remote machine); its kernels
# draw figures inline even where the caller's environment sets MPLBACKEND=Agg.
LAB_ARGS ?=
lab: env
	MPLBACKEND=module://matplotlib_inline.backend_inline $(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

# The "Open in Colab" badge and the Colab setup cell of every notebook, from pyproject.toml's Repository and version.
badges: env
	$(MEDCAP) badges

demo-data: env
	$(MEDCAP) data synth --out data/demo --seed 0

reproduce: env
	$(MEDCAP) reproduce --profile $(PROFILE) $(if $(DATA),--data $(DATA),)

# Each paper's claims with a measured verdict, from the runs and tables the notebooks wrote (after make reproduce).
claims: env
	$(MEDCAP) claims

# Same inputs, same numbers: two fresh runs into build/repeat/{a,b}, compared value by value (timings aside).
repeat-check: env
	$(MEDCAP) repeat-check --profile $(PROFILE) --out build/repeat

# ruff with pyproject.toml's [tool.ruff] (line length 120; rules E, F, W, I) over the code and the notebooks.
lint: env
	$(PY) -m ruff check .

test: env lint chromium
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval-lax -p no:cacheprovider notebooks
	$(MAKE) smoke

# The rocov2 profile end to end on two CPU cores: a local Hugging Face cache of tiny stand-ins under every
# hub id the profile names, a local copy of the demo data in the HF dataset's schema, then all notebooks.
SMOKE := build/rocov2-smoke
smoke-fixtures: env
	rm -rf $(SMOKE)
	$(PY) -m medcap_utils.testing smoke-fixtures --out $(SMOKE)

smoke: smoke-fixtures
	HF_HOME=$(abspath $(SMOKE))/hf HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	  $(MEDCAP) reproduce --profile rocov2-smoke
	$(PY) -m pytest -q tests/test_smoke_run.py --smoke-reports $(SMOKE)/reports

# Every checkpoint a profile names, into the Hugging Face cache (on a machine with network access).
models: env
	HF_HUB_OFFLINE=0 $(MEDCAP) models download --profile $(if $(filter demo,$(PROFILE)),rocov2,$(PROFILE))

lock: env
	@{ sed -n '/^#/p' $(LOCK); $(PIP) freeze --exclude-editable | sed -E 's/^torch==([0-9.]+)\+.*/torch==\1/'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

# The newest versions pyproject.toml allows, in a separate venv (the lock is not used): unit tests only.
test-latest:
	@test -x .venv-latest/bin/python || $(PYTHON_SYS) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	@.venv-latest/bin/python -c "import torch" 2>/dev/null || .venv-latest/bin/python -m pip install -q "torch==$(TORCH_VERSION)"
	.venv-latest/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[test]"
	.venv-latest/bin/python -m pip freeze --exclude-editable | grep -i -E '^(transformers|datasets|accelerate|tokenizers|huggingface-hub)=='
	.venv-latest/bin/python -m pytest -q tests

# Issue 6's measurements on one GPU, in the order that answers the open questions first (see
# reports/benchmarks/h100-2026-11-23/README.md). BENCH_PY: an interpreter that already has torch with CUDA; it runs
# the medcap command as `python -m medcap_utils.cli` from this checkout, so it needs no install of its own.
BENCH_PY   ?= $(PY)
BENCH_ARGS ?= --json --out reports/benchmarks --captions ../shared/data/rocov2-sample/test_captions.csv
bench-gpu:
	$(BENCH_PY) -m medcap_utils.cli bench train --model base --batch-size 256 --steps 20 --warmup 4 --profile $(BENCH_ARGS)
	$(BENCH_PY) -m medcap_utils.cli bench decode --model base --batch-size 512 --num-beams 3 --steps 4 --warmup 1 --profile $(BENCH_ARGS)
	$(BENCH_PY) -m medcap_utils.cli bench decode --model base --batch-size 256 --num-beams 1 --steps 4 --warmup 1 $(BENCH_ARGS)
	$(BENCH_PY) -m medcap_utils.cli bench train --model base --batch-size 256 --steps 20 --warmup 5 --compile-fast-only $(BENCH_ARGS)
	$(BENCH_PY) -m medcap_utils.cli bench train --model base --batch-size 256 --steps 20 --warmup 5 --compile $(BENCH_ARGS)
	$(BENCH_PY) -m medcap_utils.cli bench train --model large --batch-size 64 --steps 20 --warmup 4 $(BENCH_ARGS)
	$(BENCH_PY) -m medcap_utils.cli bench train --model large --image-size 384 --batch-size 32 --steps 10 --warmup 3 $(BENCH_ARGS)
# fast vs plain loss curves in fp32 and bf16 on the GPU's kernels (CURVES_ARGS: --out DIR --captions CSV --vocab-dir DIR)
	$(BENCH_PY) -m medcap_utils.cli loss-curves --model base --image-size 224 --batch-size 64 --steps 300 $(CURVES_ARGS)

clean-reports:
	rm -rf reports/notebooks reports/figures reports/tables reports/runs reports/manifest.json
