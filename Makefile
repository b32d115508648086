# hotfeed: the two commands that matter are `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
HOTFEED := $(BIN)/hotfeed

.PHONY: install services services-down demo test test-unit test-integration test-real-data bench clean

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
	HOTFEED_DEV_MODE=1 $(BIN)/python scripts/demo.py

test: services
	$(BIN)/pytest tests

test-unit: install
	$(BIN)/pytest tests/unit

test-integration: services
	$(BIN)/pytest tests/integration

# The checks against the real samples in ../shared/data (marker real_data; left out of `make test`).
# They fail, naming the folder, when it is absent. Exit 5 (none collected) is an error here too.
test-real-data: install
	$(BIN)/pytest -m real_data tests || { rc=$$?; \
	  [ $$rc -ne 5 ] || echo "test-real-data: no real_data test was collected (pytest exit 5)" >&2; exit $$rc; }

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
