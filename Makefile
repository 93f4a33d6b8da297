# Two entry points for a fresh machine:
#   make run    the controller against the bundled simulated system (no servers needed)
#   make test   the whole test suite: lint, types, layers, rule checks, rule tests, scenarios, pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test install system-deps lint unit bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Prometheus (and promtool) from Debian's package, for the integration tests.
system-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing Debian's prometheus package"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v redis-server >/dev/null || { \
	  echo "installing Debian's redis-server package"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }

run: $(STAMP)
	$(BIN)/autotuner run

lint: $(STAMP)
	$(BIN)/ruff check autotuner tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold info Dockerfile
	$(BIN)/kubernetes-validate --strict --quiet deploy/*.yaml

unit: $(STAMP)
	$(BIN)/autotuner check rules/
	$(BIN)/autotuner test rules/tests/

test: $(STAMP) system-deps lint unit
	@$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; exit $$rc
