# The README's two commands: `make demo` and `make test`.
# Each sets up what it needs (a .venv here, unless a virtual environment is already active) and runs.
# torch is installed only when missing (NeoX environments pin their own; we never replace it).
PY ?= python3
ifdef VIRTUAL_ENV
PYTHON := $(VIRTUAL_ENV)/bin/python
else
PYTHON := $(CURDIR)/.venv/bin/python
endif
PIP := $(PYTHON) -m pip --disable-pip-version-check

.PHONY: demo test setup-train setup-test torch compare

$(PYTHON):
	$(PY) -m venv $(CURDIR)/.venv

torch: $(PYTHON)
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0

# pip (and its ~40 s build of csrc/) runs only when tools/install_ok.py finds something missing or stale.
setup-train: torch
	@$(PYTHON) tools/install_ok.py train || $(PIP) install -e ".[train]"

setup-test: torch
	@$(PYTHON) tools/install_ok.py test || DS_BUILD_OPS=0 $(PIP) install -e ".[test]"

# make demo THREADS=1 JOBS=2: torch threads per run and runs at once, passed on to `neox-cpt demo`
RUN_OPTS = $(if $(THREADS),--threads $(THREADS)) $(if $(JOBS),--jobs $(JOBS))

demo: setup-train
	$(PYTHON) -m neox_cpt.cli demo $(RUN_OPTS)

compare: setup-train
	$(PYTHON) -m neox_cpt.cli demo --compare $(RUN_OPTS)

test: setup-test
	$(PYTHON) -m pytest -q
