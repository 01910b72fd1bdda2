# podsweep — everything a fresh machine needs goes through these targets.
#   make install   .venv with podsweep and its test and benchmark extras
#   make test      lint, types, the test suite; the HPO library's tests on 3.9 and 3.13 too
#   make demo      the walk-through's sweep on this machine
#   make bench     side-by-side benchmarks (FULL=1 for the whole matrix)

PYTHON ?= $(shell scripts/find-python 3.11)
VENV := .venv
BIN := $(VENV)/bin
HPO_PYTHONS := 3.9 3.13

.PHONY: install preflight lint test test-py test-hpo-versions demo bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	# the native pod supervisor and the sandbox for -v volumes, built now rather than at the
	# first pod (the Python supervisor stands in where this fails; volumes then say why)
	-$(BIN)/python -c 'import podsweep.runtime.native as n; raise SystemExit(n.main())'
	touch $@

install: $(BIN)/.installed

.venv-py%/.installed:
	$(shell scripts/find-python $*) -m venv .venv-py$*
	.venv-py$*/bin/pip install -q pytest pytest-timeout hypothesis
	touch $@

lint: install
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/mypy

# Two workers: most tests wait on real processes, so two cores carry two at once (on CI's
# 2 cores the suite takes 13 min so; one by one it took 17 min with 57 fewer tests); tests on
# one Slurm or one podman image store share a worker (tests/conftest.py). TEST_WORKERS=0
# runs them one by one.
TEST_WORKERS ?= 2
test-py: install
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup

# podsweep.hpo runs inside users' images: its tests run on the oldest and newest Pythons
# we support, with nothing but the standard library and pytest.
test-hpo-versions: $(foreach v,$(HPO_PYTHONS),.venv-py$(v)/.installed)
	@for v in $(HPO_PYTHONS); do \
	  echo "== podsweep.hpo on Python $$v"; \
	  PYTHONPATH=src .venv-py$$v/bin/python -m pytest -q -p no:cacheprovider tests/hpo || exit 1; \
	done

# what this machine lacks for the tests, one line each, before anything runs
preflight:
	@scripts/test-preflight

test: preflight lint test-py test-hpo-versions

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	$(BIN)/python benchmarks/hpo_coord.py $(if $(FULL),--full,)
	$(BIN)/python benchmarks/hpo_efficiency.py $(if $(FULL),,--quick)
	$(BIN)/python benchmarks/hpo_pick_cost.py $(if $(FULL),,--quick)
	$(BIN)/python benchmarks/scheduler.py
	$(BIN)/python benchmarks/scheduler_scale.py $(if $(FULL),--full,)
	$(BIN)/python benchmarks/ui_pages.py
	$(BIN)/python benchmarks/login_flood.py
	@if scontrol ping >/dev/null 2>&1; then $(BIN)/python benchmarks/slurm.py; \
	else echo "benchmarks/slurm.py skipped: Slurm is not running (scripts/slurm-up.sh)"; fi

clean:
	rm -rf $(VENV) .venv-py* .demo benchmarks/results
