# The two commands of a fresh machine: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Two pytest workers (tests/conftest.py: the end-to-end tests on one, the rest beside them);
# WORKERS= runs everything in this process.
WORKERS ?= -n 2 --no-loadscope-reorder
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt constraints.txt pyproject.toml Makefile | sha1sum | cut -c1-12)

.PHONY: install system system-tests test demo sandbox-up sandbox-down validate clean

# Bytecode is compiled once here: Airflow starts a Python process per task, and one that compiles
# Airflow and the Kubernetes client from source (no .pyc, PYTHONDONTWRITEBYTECODE) spends seconds
# of every task on it.
$(STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11, 5) <= sys.version_info[:3] < (3, 12) else "Python 3.11.5 or a later 3.11 is needed (the pinned requirements): $(PYTHON) is " + sys.version.split()[0] + "; install one, or run make PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt -e .
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Debian's prometheus and prometheus-pushgateway (and kubectl for the tests), when missing.
system:
	sandbox/system-packages.sh

system-tests:
	sandbox/system-packages.sh --tests

## Runs every test (unit, sandbox, Airflow end-to-end).
test: install system-tests
	$(BIN)/python -m pytest $(WORKERS) $(PYTEST_ARGS)

## The demo on the sandbox: a fault applied through the Kubernetes API and seen in Prometheus.
demo: install system
	$(BIN)/python -m sandbox.demo $(if $(ONCE),--once,)

validate: install
	$(BIN)/chaosctl validate

sandbox-up: install system
	$(BIN)/chaos-sandbox up

sandbox-down:
	$(BIN)/chaos-sandbox down

clean:
	-$(BIN)/chaos-sandbox down 2>/dev/null
	rm -rf $(VENV) .sandbox .pytest_cache
