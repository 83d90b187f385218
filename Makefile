# The two commands a newcomer runs: `make demo` and `make test`. Both create .venv and install spinboot first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench goldens docs clean sandbox-build

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The whole bootstrap of examples/spinboot.yaml (Halyard engine) on the local sandbox, from nothing to a running
# (sandbox) Spinnaker. ENGINE=kustomize bootstraps examples/kustomize.yaml (the kustomize engine) instead.
# The first run on a machine builds the sandbox's binaries (minutes). KEEP=1 leaves it running.
DEMO_SANDBOX := $(CURDIR)/out/sandbox
ENGINE ?= halyard
DEMO_FILE := $(if $(filter kustomize,$(ENGINE)),examples/kustomize.yaml,examples/spinboot.yaml)
demo: $(STAMP)
	$(BIN)/spinboot validate -c $(DEMO_FILE)
	$(BIN)/spinboot render -c $(DEMO_FILE) -d out/demo
	SPINBOOT_SANDBOX_DIR=$(DEMO_SANDBOX) $(BIN)/spinboot sandbox up --seed $(DEMO_FILE)
	SPINBOOT_SANDBOX_DIR=$(DEMO_SANDBOX) $(BIN)/spinboot apply -c $(DEMO_FILE) --sandbox --yes; \
	rc=$$?; \
	if [ -z "$(KEEP)" ]; then SPINBOOT_SANDBOX_DIR=$(DEMO_SANDBOX) $(BIN)/spinboot sandbox down; \
	else echo "sandbox left running: SPINBOOT_SANDBOX_DIR=$(DEMO_SANDBOX) $(BIN)/spinboot sandbox down"; fi; \
	exit $$rc

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks and the full fault/kill matrix against the sandbox (~35 min): bench/results/latest.{json,md},
# targets.png. BENCH_ARGS="--only render,fresh" runs a part; see `python bench/run.py --help`.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) sandbox-build
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Rewrite the golden files after a deliberate renderer change; review `git diff tests/goldens` before committing.
goldens: $(STAMP)
	SPINBOOT_UPDATE_GOLDENS=1 $(BIN)/python -m pytest tests/test_render_golden.py -q

# The sandbox's binaries: upstream Kubernetes, etcd and kwok (~7 min cold) and the Go stand-ins (~1 min cold),
# cached outside the checkout by their pinned versions; instant when warm. The last line: the pinned kustomize and
# Kubernetes' OpenAPI schemas that `spinboot render` uses for the kustomize engine (docs/engines.md), so CI's cache is warm.
sandbox-build: $(STAMP)
	time $(BIN)/python -m spinboot.sandbox.build
	time $(BIN)/python -m spinboot.sandbox.gcp build
	time $(BIN)/python -m spinboot.render.kustomize_build

docs: $(STAMP)
	$(BIN)/python -m spinboot.config.docs > docs/configuration.md

clean:
	rm -rf out .pytest_cache
