# Everything a fresh Debian 12 machine needs, from a clean clone:
#   make setup   apt packages (if missing) + .venv with the project and its test tools
#   make test    setup, lint (ruff, mypy, import rules), then every test; the tests start
#                their own servers
#   make demo    setup, local stack, both processes, sql/demo.sql, source and target side by side
#   make drill   the long fault drill; its figures go to docs/reliability.md
#   make bench   the benchmark (about 10 minutes); its table goes to docs/performance.md
#   make docs    the settings tables of README.md and docs/tls.md, from shared/config.py

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup test lint unit demo drill drill-cluster bench docs stack-start stack-stop stack-env clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m devstack install-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

test: lint
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit

demo: setup
	$(BIN)/python -m devstack.demo

# The long fault drill (100+ faults, about 10 minutes); writes docs/reliability.md.
DRILL_FAULTS ?= 160
drill: setup
	$(BIN)/python -m drill --faults $(DRILL_FAULTS) --report docs/reliability.md

# Node kills on a 3-node RabbitMQ cluster and a 3-node Galera cluster under load (about 5
# minutes); writes its figures into docs/deployment.md.
drill-cluster: setup
	$(BIN)/python -m drill --cluster --faults 12 --rate 60 --report docs/deployment.md

# Throughput, latency, stage limits and memory; writes docs/performance.md.
# The project's modules compiled first, as an installed package's are (pip compiles them): with
# PYTHONDONTWRITEBYTECODE set, every start would otherwise compile them again, which the
# drain's timing (it starts both processes) would count.
bench: setup
	$(BIN)/python -m compileall -q -j 0 applier extractor shared bench
	$(BIN)/python -m bench --report docs/performance.md

# The settings tables, written from the declarations (a unit test fails until they are).
docs: setup
	$(BIN)/python -m harness.docs

# CDC_STACK_RABBITMQ_NODES=3 / CDC_STACK_MARIADB_NODES=3: a RabbitMQ / Galera cluster beside
# the single servers, named by `make stack-env` (docs/deployment.md).
stack-start: setup
	$(BIN)/python -m devstack start

stack-stop:
	$(PYTHON) -m devstack stop

stack-env:
	@$(PYTHON) -m devstack env

clean: stack-stop
	rm -rf .stack $(VENV)
