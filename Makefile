# moa-lit: `make train` runs the main job, `make test` the test suite.
# Both install what is missing into the active Python environment first.
PYTHON ?= python
# torch is installed first, pinned, only where it is missing: the pinned CPU
# build comes from local disk in seconds, while an unpinned torch would pull a
# multi-GB CUDA build. pyproject itself only asks for torch>=2.2.
TORCH_PIN ?= torch==2.13.0
# Is the moa_lit imported by this Python the one in this checkout's src/, with
# every pinned requirement (and the dev extra's) installed at an allowed version?
HAS_PACKAGE = $(PYTHON) .ci/deps_installed.py 2>/dev/null
HAS_DEV = $(PYTHON) .ci/deps_installed.py dev 2>/dev/null

.PHONY: install install-dev ensure ensure-dev train test bench clean

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_PIN)"
	$(PYTHON) -m pip install -e .

install-dev:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_PIN)"
	$(PYTHON) -m pip install -e ".[dev]"

ensure:
	@$(HAS_PACKAGE) || $(MAKE) --no-print-directory install

ensure-dev:
	@($(HAS_PACKAGE) && $(HAS_DEV)) || $(MAKE) --no-print-directory install-dev

# The default 5-fold run on the built-in synthetic data; extra Hydra
# overrides go in ARGS, e.g. make train ARGS="trainer.max_epochs=5".
train: ensure
	$(PYTHON) -m moa_lit.train $(ARGS)

test: ensure-dev
	$(PYTHON) -m pytest $(PYTEST_ARGS)

bench: ensure
	$(PYTHON) -m moa_lit.bench $(ARGS)

clean:
	rm -rf outputs/* multirun .pytest_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
