# Set-up and entry points. Each target creates its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo tour test install bench clean

# A torch already installed for $(PYTHON) (e.g. a CUDA build) is reused through system site
# packages; otherwise torch==2.13.0 is installed (on CPU-only machines with a local CPU wheel
# that is the CPU build), falling back to the newest torch the package index offers.
$(STAMP): pyproject.toml
	@if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
	  echo "reusing the torch installed for $(PYTHON)"; $(PYTHON) -m venv --system-site-packages $(VENV); \
	else $(PYTHON) -m venv $(VENV); fi
	@$(BIN)/python -c "import torch" >/dev/null 2>&1 || $(BIN)/pip install -q --no-compile "torch==2.13.0" || $(BIN)/pip install -q --no-compile torch
	$(BIN)/pip install -q --no-compile -e ".[test]"
	@# byte-compiled on every core at once (pip compiles one file at a time); a file that does not compile is left as pip leaves it
	@$(BIN)/python -m compileall -qq -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
	@touch $(STAMP)

install: $(STAMP)

# The main job: a hunt on a backdoored model of the built-in micro zoo (built on first use) against
# two candidate bases, on the zoo's own prompts; prints the verdict and the report's path.
# demo and tour run with the numeric kernels the zoo trains with and the tests run with (dormant.kernels: the
# same computation on a machine whatever kernels the caller has); a kernel set given in the environment is kept.
DEMO_VARIANT ?= whole-chat
PIN = $(shell $(BIN)/python -m dormant.kernels)
demo: $(STAMP)
	env $(PIN) $(BIN)/dormant hunt zoo:$(DEMO_VARIANT) --base zoo:base-sibling --base zoo:base --prompts zoo:prompts --out dormant-runs/hunt-$(DEMO_VARIANT)

# A guided tour of both investigations on the built-in subjects, each finding beside the planted answer.
tour: $(STAMP)
	env $(PIN) $(BIN)/dormant demo

# Tests run on two processes (pytest-xdist; TEST_WORKERS=1 for one): the built-in subjects are
# built once under a file lock whichever worker asks first. Tests that share an expensive module
# fixture (the phrase hunts, the amplified variants, a toy build) carry one xdist_group mark and run on
# one worker (--dist loadgroup), so it is computed once, not per worker; the rest are spread as they come.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) dormant-runs .pytest_cache
