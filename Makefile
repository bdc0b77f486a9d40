# Two entry points for a fresh machine (see README.md):
#   make demo   animate a portrait end to end on the embedded stack (local Triton on CPU, tiny profile)
#   make test   run the test suite (what CI runs)
# Installs come from the lock files in requirements/ (exact versions with hashes); `make lock` upgrades them on purpose.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LOCKS  := requirements/dev.lock requirements/web.lock requirements/export.lock requirements/webrtc.lock \
          requirements/triton-python.lock
# pip-compile, run from the project's environment; CUSTOM_COMPILE_COMMAND is what each lock's header says to run.
COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
           --strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: setup demo test tools lock clean

setup: $(VENV)/.installed .triton/.installed

$(VENV)/.installed: pyproject.toml requirements/dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements/dev.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

.triton/.installed: scripts/install_triton.sh requirements/triton-python.lock | $(VENV)/.installed
	PYTHON=$(PY) bash scripts/install_triton.sh .triton
	touch $@

tools:
	bash scripts/install_tools.sh .tools

demo: setup
	$(VENV)/bin/liveportrait demo --output artifacts/demo.mp4

test: setup tools
	$(PY) -m pytest $(PYTEST_ARGS)

# Re-resolve every lock to the newest releases pyproject.toml allows; then `make test` installs and checks them.
# web.lock and export.lock start from dev.lock's pins, so the images run the versions the tests ran.
lock: $(VENV)/.installed
	$(COMPILE) --upgrade --all-build-deps --extra export --extra web --extra webrtc --extra dev -o requirements/dev.lock pyproject.toml
	for extra in web export webrtc; do cp requirements/dev.lock requirements/$$extra.lock; \
	  $(COMPILE) --extra $$extra -o requirements/$$extra.lock pyproject.toml || exit 1; done
	$(COMPILE) --upgrade -o requirements/triton-python.lock requirements/triton-python.in

clean:
	rm -rf artifacts build .pytest_cache
