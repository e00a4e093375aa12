# routeflow: `make demo` runs the rftest2 demo, `make test` the test suite.
# Both install what they need first (Debian packages, Open vSwitch, a venv).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup system venv demo demo-stop test unit integration lint clean-lab bench bench-smoke fuzz

setup: system venv

system:
	@scripts/setup-system.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(PY) -m routeflow demo rftest2 $(if $(KEEP),--keep,)

demo-stop: venv
	$(PY) -m routeflow demo --stop

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

unit: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

integration: setup
	$(PY) -m pytest -q -p no:cacheprovider -m integration tests/integration

lint: venv
	@$(PY) -m pip install -q -e '.[test,dev]'
	$(PY) -m ruff check --select F,E9,I src tests bench
	$(PY) -m mypy

# The README's configuration reference, generated from the config schema and loader
# (tests/unit/config/test_reference.py fails when it is out of date).
.PHONY: docs
docs: venv
	$(PY) -m routeflow.config.reference --update README.md

clean-lab: venv
	-$(PY) -m routeflow lab down
	-$(PY) -m routeflow.vnet.cleanup

# Benchmarks (issue 4): one table, JSON in bench/results/. Not part of `make test`.
# Extra options: make bench BENCH_ARGS="--only install --sizes 1000000 --profile"
bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

bench-smoke: setup
	$(PY) bench/run.py --quick --only table1,install,bgp --sizes 1000 $(BENCH_ARGS)

# Fuzzing (security issue): every target of fuzz/targets/, 1,000,000 cases each by default.
# Not part of `make test`, which runs each target briefly (tests/unit/test_fuzz_smoke.py).
# Extra options: make fuzz FUZZ_ARGS="--only netlink,frames --seconds 600 --keep-going"
fuzz: setup
	$(PY) fuzz/run.py $(FUZZ_ARGS)
