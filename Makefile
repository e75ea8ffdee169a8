# Two commands on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps run test test-fast bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, from the pin in constraints.txt: a looser request pulls a multi-GB CUDA build.
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP) system-deps

# System packages tests need (Debian's chromium for the HTML report); a no-op once present.
system-deps:
	sh scripts/ensure_chromium.sh

run: $(STAMP)
	$(BIN)/hone optimize

# --durations: the slowest tests in every CI log, for whoever keeps the suite within its budget.
test: $(STAMP) system-deps
	$(BIN)/python -m pytest --durations=30

test-fast: $(STAMP) system-deps
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/run_default.py

clean:
	rm -rf $(VENV) hone-runs build dist src/*.egg-info
