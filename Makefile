# The two commands of a fresh machine: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt constraints.txt pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install test demo sandbox-up sandbox-down validate clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt -e .
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Runs every test (unit, sandbox, Airflow end-to-end). Needs Debian's prometheus and
## prometheus-pushgateway on PATH (.ci/run installs them).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The demo on the sandbox: a fault applied through the Kubernetes API and seen in Prometheus.
demo: install
	$(BIN)/python -m sandbox.demo $(if $(ONCE),--once,)

validate: install
	$(BIN)/chaosctl validate

sandbox-up: install
	$(BIN)/chaos-sandbox up

sandbox-down:
	$(BIN)/chaos-sandbox down

clean:
	-$(BIN)/chaos-sandbox down 2>/dev/null
	rm -rf $(VENV) .sandbox .pytest_cache
