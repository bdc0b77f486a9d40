# Two entry points for a fresh machine (see README.md):
#   make demo   animate a portrait end to end on the embedded stack (local Triton on CPU, tiny profile)
#   make test   run the test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: setup demo test tools clean

setup: $(VENV)/.installed .triton/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[export,dev]'
	touch $@

.triton/.installed: scripts/install_triton.sh | $(VENV)/.installed
	PYTHON=$(PY) bash scripts/install_triton.sh .triton
	touch $@

tools:
	bash scripts/install_tools.sh .tools

demo: setup
	$(VENV)/bin/liveportrait demo --output artifacts/demo.mp4

test: setup tools
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf artifacts build .pytest_cache
