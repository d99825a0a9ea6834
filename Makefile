# Everything a fresh machine needs is installed by these targets: `make run`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_PEERS := tests/peers/node_modules/kinesalite/package.json

.PHONY: setup run test check lint typecheck unit bench soak clean

$(STAMP): pyproject.toml scripts/bootstrap-system.sh
	bash scripts/bootstrap-system.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# systemd-python needs libsystemd headers; without them the agent runs minus notify/journald
	-$(PY) -m pip install -q -e '.[systemd]' || echo "systemd-python not installed: notify and journald off"
	touch $@

$(NODE_PEERS): tests/peers/package.json
	cd tests/peers && npm install --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP)

run: setup
	$(PY) -m agent.cli.demo

lint: setup
	$(VENV)/bin/ruff check agent tests
	$(VENV)/bin/ruff format --check agent tests

typecheck: setup
	$(VENV)/bin/mypy

unit: setup $(NODE_PEERS)
	$(PY) -m pytest

check: lint typecheck unit

test: setup check

bench: setup
	PEERS_DIR=$(VENV)/peers bash scripts/bootstrap-system.sh rsyslog syslog-ng
	$(PY) tests/bench/run_all.py
	$(PY) tests/bench/bench_endpoint.py

# The long reliability scenarios (30 SIGKILLs, a 60 s outage, a minute of faults): a table of
# lines written / delivered / lost / duplicated and peak RSS per scenario.
soak: setup $(NODE_PEERS)
	$(PY) -m tests.reliability.soak

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache demo-state

# Packages (dist/): the agent in a venv under /opt/kinesis-agent, the unit, /etc/agent.json.
.PHONY: deb rpm packages

deb: setup
	bash packaging/stage.sh
	bash packaging/deb/build.sh

rpm: setup
	bash packaging/stage.sh
	bash packaging/rpm/build.sh

packages: deb rpm
