# routeflow: `make demo` runs the rftest2 demo, `make test` the test suite.
# Both install what they need first (Debian packages, Open vSwitch, a venv).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup system venv demo demo-stop test unit integration lint clean-lab

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
	$(PY) -m ruff check --select F,E9,I src tests
	$(PY) -m mypy

clean-lab: venv
	-$(PY) -m routeflow lab down
	-$(PY) -m routeflow.vnet.cleanup
