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

.PHONY: demo test test-all lint venv browser verl-env gpu-wheels

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

# verl's side environment for tests/test_verl.py: verl 0.9.1 pins transformers < 5.11, so it cannot share .venv.
# .venv-verl holds only the exact, hash-checked pins of tests/verl-env.txt; a .pth file adds .venv's site-packages
# AFTER its own (torch, ray, caprl's editable install... come from .venv). Rebuilt from scratch when the pins or
# .venv change (about 20 s and 200 MB; no compiler needed).
VERL_VENV ?= .venv-verl
VERL_PY := $(VERL_VENV)/bin/python
VERL_STAMP := $(VERL_VENV)/.caprl-verl-installed

verl-env: $(VERL_STAMP)

$(VERL_STAMP): tests/verl-env.txt $(STAMP)
	rm -rf $(VERL_VENV)
	$(PY) -m venv --without-pip $(VERL_VENV)
	main=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  side=$$($(VERL_PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  echo "import site; site.addsitedir('$$main')" > "$$side/zz-caprl-main-venv.pth"
	$(VERL_PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --require-hashes \
	  -r tests/verl-env.txt
	$(VERL_PY) -c 'import caprl.verl.reward, verl.experimental.reward_loop, verl.workers.reward_manager.prime'
	touch $(VERL_STAMP)

test: $(STAMP) $(VERL_STAMP) browser
	$(PY) -m pytest

# Everything, including tests marked slow (full learning runs).
test-all: $(STAMP) $(VERL_STAMP) browser
	CAPRL_SLOW=1 $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check caprl tests benchmarks
	$(VENV)/bin/lint-imports --no-logo

# Wheels that benchmarks/gpu/run.sh installs on a GPU machine (CPython 3.12, manylinux x86_64; the pins are
# benchmarks/gpu/wheels.txt), downloaded into the ignored benchmarks/gpu/wheels/. A device call carries them
# (carry: ["benchmarks/gpu/wheels"]) with the working tree, 64 MiB at most together: the total is printed and checked.
GPU_WHEELS := benchmarks/gpu/wheels
GPU_PLATFORMS := manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_28_x86_64 \
  manylinux_2_31_x86_64 manylinux_2_34_x86_64
# Only pip is needed (no virtualenv): GPU_PIP_PYTHON picks the interpreter whose pip downloads.
GPU_PIP_PYTHON ?= $(PYTHON)
gpu-wheels:
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(GPU_PIP_PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp $(addprefix --platform ,$(GPU_PLATFORMS)) -d $(GPU_WHEELS) -r benchmarks/gpu/wheels.txt
	@wheels=$$(du -cb $(GPU_WHEELS)/*.whl | tail -1 | cut -f1); \
	  tree=$$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null \
	    | awk '/\ttotal$$/ {s += $$1} END {print s}'); \
	  total=$$((wheels + tree)); \
	  echo "$$(ls $(GPU_WHEELS)/*.whl | wc -l) wheels: $$((wheels / 1048576)) MiB; working tree: $$((tree / 1048576)) MiB;" \
	    "together $$((total / 1048576)) MiB of the 64 MiB a device call takes"; \
	  test $$total -le 67108864 || { echo "too large for one device call" >&2; exit 1; }
