# One entry point for humans and CI: `make test` on a fresh clone sets up everything it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NODE_DIR := tests/servers/node
PYTEST_ARGS ?=
# pyproject allows paho-mqtt>=2.0,<3: the main venv gets the newest, this one the oldest, and
# `make test` runs the gateway tests on both (paho_fast falls back to stock paho before 2.2)
PAHO_OLDEST ?= 2.0.0
VENV_PAHO   ?= .venv-paho-$(PAHO_OLDEST)

.PHONY: help install install-paho-oldest node mosquitto lint typecheck test test-fast \
	test-paho-oldest demo bench bench-smoke clean

help:
	@echo "make test         install what the tests need, lint, type-check, run the whole suite"
	@echo "                  (and the gateway tests again with the oldest allowed paho-mqtt)"
	@echo "make demo         run the gateway end to end locally (broker, server, gateway, device)"
	@echo "make bench        run the benchmark suite against the peers"
	@echo "make bench-smoke  a few-seconds run of the benchmarks (keeps them from rotting)"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,msgpack,bench,demo]'
	@touch $@ $(VENV)/.installed-demo

install: $(VENV)/.installed

$(VENV_PAHO)/.installed: pyproject.toml
	@test -x $(VENV_PAHO)/bin/python || $(PYTHON) -m venv $(VENV_PAHO)
	$(VENV_PAHO)/bin/python -m pip install -q -e '.[test,demo]' 'paho-mqtt==$(PAHO_OLDEST)'
	@touch $@

install-paho-oldest: $(VENV_PAHO)/.installed

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node: $(NODE_DIR)/node_modules/.installed

# mosquitto: from PATH (or /usr/sbin, where Debian puts it); as root, install Debian's package.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing mosquitto (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "mosquitto is needed by the tests: install it (Debian/Ubuntu: sudo apt-get install mosquitto;" \
		     "macOS: brew install mosquitto) and make sure it is on PATH" >&2; exit 1; \
	fi

lint: install
	$(VENV)/bin/ruff check sio_mqtt tests benchmarks
	$(VENV)/bin/ruff format --check sio_mqtt tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

test: install node mosquitto lint typecheck
	$(PY) -m pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-paho-oldest
	$(PY) -m benchmarks.run --smoke

# the gateway tests (real CLI, mosquitto, amqtt, Node server) with the oldest allowed paho; the
# fast-path tests need paho's internals of 2.2 and are not run there (plain paho is used)
test-paho-oldest: install-paho-oldest node mosquitto
	$(VENV_PAHO)/bin/python -m pytest -q tests/gateway tests/unit/test_paho_versions.py \
		--ignore=tests/gateway/test_paho_fast_broker.py $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

# What the demo alone needs (the package + the demo extra: no test, lint or benchmark tools);
# `make test` installs everything, this included.
$(VENV)/.installed-demo: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[demo]'
	@touch $@

# no root, no docker: mosquitto from PATH when present, else the pure-Python broker (demo extra)
demo: $(VENV)/.installed-demo
	$(PY) -m sio_mqtt.cli demo

bench: install node mosquitto
	$(PY) -m benchmarks.run

bench-smoke: install node mosquitto
	$(PY) -m benchmarks.run --smoke

clean:
	rm -rf $(VENV) $(VENV_PAHO) $(NODE_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
