# Two entry points for a fresh machine:
#   make run    the controller against the bundled simulated system (no servers needed)
#   make test   the whole test suite: lint, types, layers, rule checks, rule tests, scenarios, pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The decision core and the simulator's model compiled with mypyc (tools/build_native.py).
NATIVE := build/native/.compiled-stamp

.PHONY: run test install native clean-native system-deps lint unit bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# What only the benchmarks need (gunicorn, for the fidelity benchmark's HTTP service).
BENCH_STAMP := $(VENV)/.bench-installed-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

$(NATIVE): $(STAMP) tools/build_native.py $(wildcard autotuner/core/*.py autotuner/core/learn/*.py autotuner/control/*.py autotuner/sim/*.py)
	@echo "compiling the decision core and the simulator's model with mypyc (about a minute)"
	@mkdir -p build/native
	$(BIN)/python tools/build_native.py > build/native/build.log 2>&1 || { cat build/native/build.log; exit 1; }
	touch $(NATIVE)

native: $(NATIVE)

# Back to running every module from its source.
clean-native:
	find autotuner -name '*.so' -delete
	rm -rf build/native

# Prometheus (and promtool) from Debian's package, for the integration tests.
system-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing Debian's prometheus package"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v redis-server >/dev/null || { \
	  echo "installing Debian's redis-server package"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }

run: $(NATIVE)
	$(BIN)/autotuner run

lint: $(STAMP)
	$(BIN)/ruff check autotuner tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold info Dockerfile
	$(BIN)/kubernetes-validate --strict --quiet deploy/*.yaml

unit: $(NATIVE)
	$(BIN)/autotuner check rules/ rules/examples/
	$(BIN)/autotuner test rules/tests/ rules/examples/tests/

test: $(NATIVE) system-deps lint unit
	@$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; exit $$rc

# Every benchmark, each printing its figures and how it measured them.
bench: $(NATIVE) $(BENCH_STAMP) system-deps
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_sim.py
	$(BIN)/python bench/bench_scaling.py
	$(BIN)/python bench/bench_ruletest.py
	$(BIN)/python bench/bench_check.py
	$(BIN)/python bench/bench_prometheus.py
	$(BIN)/python bench/bench_daemon.py
	$(BIN)/python bench/bench_tune.py
	$(BIN)/python bench/bench_fidelity.py
