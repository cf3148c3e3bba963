# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: run test setup lint typecheck pytest system-deps bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: setup
	@bash scripts/system-deps.sh --no-browser
	$(PY) manage.py migrate --no-input -v 0
	$(PY) manage.py ensure_admin
	$(PY) manage.py seed_demo
	PORT=$(PORT) $(PY) manage.py up

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

system-deps:
	@bash scripts/system-deps.sh

pytest: setup
	$(PY) -m pytest

test: setup lint typecheck system-deps
	bash scripts/pytest-strict.sh

bench: setup
	$(PY) bench/scheduler.py
	$(PY) bench/notify_latency.py

clean:
	rm -rf $(VENV) var
