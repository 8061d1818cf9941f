# Both entry points create (or reuse) the project's virtualenv in .venv and install what they need.
#   make demo   - the main job on the embedded default: the CPU demo on the shapes world
#   make test   - the test suite (what CI runs)
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.caprl-installed
DEMO_OUT ?= runs/demo
export HF_HUB_OFFLINE := 1

# torch/torchvision releases served from this machine's disk (x86_64); aarch64 has a CPU build of an older pair.
ifeq ($(shell uname -m),aarch64)
TORCH_PINS := torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: demo test test-all lint venv browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_PINS)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/caprl demo --out $(DEMO_OUT)

# The HTML report test renders a page in Debian's headless Chromium; install it where it is missing.
browser:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium (the HTML report test renders in it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) browser
	$(PY) -m pytest

# Everything, including tests marked slow (full learning runs).
test-all: $(STAMP) browser
	CAPRL_SLOW=1 $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check caprl tests benchmarks
