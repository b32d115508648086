# hotfeed: the two commands that matter are `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
HOTFEED := $(BIN)/hotfeed

.PHONY: install services services-down demo test test-unit test-integration bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Re-installs when pyproject.toml changes; pip's cache makes the big wheels (torch) cheap.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

services: install
	$(HOTFEED) services up

services-down: install
	$(HOTFEED) services down

demo: services
	$(BIN)/python scripts/demo.py

test: services
	$(BIN)/pytest tests

test-unit: install
	$(BIN)/pytest tests/unit

test-integration: services
	$(BIN)/pytest tests/integration

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
