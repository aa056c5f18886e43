# Two commands do all set-up on a fresh machine that has Python 3.11+:
#   make run    virtualenv + install + `chatmill dev` (embedded PostgreSQL and Redis, no keys)
#   make test   virtualenv + dev install + the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
WMILL := windmill_scripts/node_modules/.bin/wmill

.PHONY: run test lint wmill-lint clean

run: $(STAMP)
	$(BIN)/chatmill dev

test: $(STAMP) $(if $(shell command -v npm),$(WMILL))
	$(BIN)/pytest

lint: $(STAMP) $(WMILL)
	$(BIN)/ruff check .
	$(BIN)/mypy
	cd windmill_scripts && ./node_modules/.bin/wmill lint --locks-required

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

$(WMILL): windmill_scripts/package-lock.json
	cd windmill_scripts && npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) windmill_scripts/node_modules .mypy_cache .ruff_cache .pytest_cache
