# z2z developer entry points. `make run` and `make test` are the two setup commands.
# The venv uses Debian's python3 with system site packages so that python3-avahi
# (the `avahi` module) and dbus-python from apt are importable.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN_ARGS ?=
PI_ARGS ?=
FUZZ_RUNS ?= 100000

.PHONY: install run test test-unit lint bench fuzz clean system npm-tools pi-check systemd-check fresh-check

$(BIN)/z2z: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/z2z

# The independent mDNS stacks from the npm registry that the interop matrix runs
# (tests/tools/npm: versions pinned by package-lock.json).  npm ci runs only when the
# lock changed, so once installed `make test` needs no network for them.
NPM_TOOLS := tests/tools/npm
$(NPM_TOOLS)/node_modules/.package-lock.json: $(NPM_TOOLS)/package.json $(NPM_TOOLS)/package-lock.json
	cd $(NPM_TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

npm-tools: $(NPM_TOOLS)/node_modules/.package-lock.json

run: install
	$(BIN)/z2z run $(RUN_ARGS)

# As root on Debian: first installs the Debian packages the tests drive (a second when
# nothing is missing), then builds the venv, then runs everything.
test: system
	@$(MAKE) --no-print-directory install npm-tools
	$(BIN)/ruff check z2z tests bench fuzz
	$(BIN)/ruff format --check z2z tests bench fuzz
	$(BIN)/mypy z2z
	$(BIN)/pytest -q -rs

# The Debian packages the tests need (tests/support/setup-debian.sh; root, idempotent).
system:
	@tests/support/setup-debian.sh

test-unit: install
	$(BIN)/pytest -q -m "not netns"

lint: install
	$(BIN)/ruff check z2z tests bench fuzz
	$(BIN)/ruff format --check z2z tests bench fuzz
	$(BIN)/mypy z2z

bench: install
	$(BIN)/python -m bench

# Coverage-guided fuzzing (atheris) of the value decoder, the sealed envelope, the DNS
# query parser and the config loader; FUZZ_RUNS inputs each (CI runs 25,000 each in make test).
fuzz: install
	cd fuzz && log=$$(mktemp) && for t in fuzz_*.py; do \
		echo "== $$t"; \
		../$(BIN)/python $$t -runs=$(FUZZ_RUNS) -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
			-print_final_stats=1 -artifact_prefix=./ >$$log 2>&1; rc=$$?; \
		grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|plain run)' $$log; \
		if [ $$rc -ne 0 ]; then tail -40 $$log; rm -f $$log; exit $$rc; fi; \
	done; rm -f $$log

# Platform checks, not in `make test` (slow; root; Debian roots cached in /var/cache):
# contrib/z2z.service under systemd as PID 1 (systemd-nspawn), and z2z on arm64 under
# qemu-user-static.  Results and timings: docs/raspberry-pi.md.
systemd-check: install
	$(BIN)/python tests/platform/systemd_check.py

pi-check: install
	$(BIN)/python tests/platform/pi_check.py $(PI_ARGS)

# The README's `make test` from scratch on a fresh debootstrapped Debian 12 root
# (docs/development.md); stdlib only, so it needs no venv.
fresh-check:
	python3 tests/platform/fresh_check.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(NPM_TOOLS)/node_modules
