# z2z developer entry points. `make run` and `make test` are the two setup commands.
# The venv uses Debian's python3 with system site packages so that python3-avahi
# (the `avahi` module) and dbus-python from apt are importable.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN_ARGS ?=

.PHONY: install run test test-unit lint bench clean

$(BIN)/z2z: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/z2z

run: install
	$(BIN)/z2z run $(RUN_ARGS)

test: install
	$(BIN)/ruff check z2z tests bench
	$(BIN)/mypy z2z
	$(BIN)/pytest -q -rs

test-unit: install
	$(BIN)/pytest -q -m "not netns"

lint: install
	$(BIN)/ruff check z2z tests bench
	$(BIN)/mypy z2z

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
