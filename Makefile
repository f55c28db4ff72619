# The two set-up commands of the README live here. Both create the virtual environment on
# first use (.venv, with pip), so a fresh machine needs nothing but Python 3.11 and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision are installed first and explicitly: on the project's machines these
# exact versions come from local disk; on a GPU machine set TORCH_SPEC to the build you want.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
PRESET ?= cpu
RUN ?= runs/book-$(PRESET)
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: env book profile test clean-env

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[notebooks,test,export]"
	touch $(STAMP)

env: $(STAMP)

# The main job: the notebook book at the `cpu` preset on the embedded digits data set.
# Executed notebooks, figures and tables go to $(RUN)/.
book: $(STAMP)
	$(PY) -m instanas_core book --preset $(PRESET) --run-dir $(RUN)

# The latency-profiling run of §4.1 on its own: the look-up table at 32 px, checked against
# 60 real children (a few minutes on 2 cores).
profile: $(STAMP)
	$(PY) -m instanas_core profile --resolution 32 --children 60 --out runs/profile-32

# Lint and format checks first (seconds), then the tests on two worker processes (pytest-xdist):
# most tests train on one thread, so two workers use both cores. `--dist loadfile` keeps each test
# file on one worker, in order (module fixtures, test_kill_resume's ordered stages). The session's
# smoke book run is then made once per worker that needs it: xdist's `loadgroup`, which could
# share it, does not group under pytest 9 (xdist 3.8 renames item._nodeid, which pytest 9 ignores).
test: $(STAMP)
	$(PY) -m ruff check instanas_core tests notebooks
	$(PY) -m ruff format --check instanas_core tests
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

clean-env:
	rm -rf $(VENV)
