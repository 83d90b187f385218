# The two commands a newcomer runs: `make demo` and `make test`. Both create .venv and install spinboot first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test goldens docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spinboot validate -c examples/spinboot.yaml
	$(BIN)/spinboot render -c examples/spinboot.yaml -o out/demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Rewrite the golden files after a deliberate renderer change; review `git diff tests/goldens` before committing.
goldens: $(STAMP)
	SPINBOOT_UPDATE_GOLDENS=1 $(BIN)/python -m pytest tests/test_render_golden.py -q

docs: $(STAMP)
	$(BIN)/python -m spinboot.config.docs > docs/configuration.md

clean:
	rm -rf out .pytest_cache
