# The two commands a newcomer needs: `make demo` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TOOLS  := .tools

.PHONY: setup system-deps tools demo test lint typecheck pytest bench schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

system-deps:
	bash ci/system-deps.sh

tools: $(STAMP)
	bash ci/provision-tools.sh

setup: system-deps $(STAMP) tools

demo: $(STAMP)
	$(BIN)/preview-worker demo

lint: $(STAMP)
	$(BIN)/ruff check app tests bench ci
	$(BIN)/ruff format --check app tests bench ci

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: setup
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m pytest

test: setup lint typecheck pytest

bench: setup
	$(BIN)/python -m bench.run_all

schema: $(STAMP)
	$(BIN)/preview-worker schema > schemas/preview-job.schema.json

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache demo-data
