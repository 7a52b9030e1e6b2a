# The front door: make install | up | test | lint | bench
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Each recipe line that needs the settings loads them from .env (make up creates it).
WITH_ENV := set -a; . ./.env; set +a;

.PHONY: install up test lint format bench lock services-check

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	touch $@

install: $(VENV)/.installed

lock:  ## re-resolve requirements.lock after editing pyproject.toml (needs uv)
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -q --no-header -o requirements.lock

.env:
	cp .env.example .env

services-check: install .env
	$(WITH_ENV) $(PY) -m ops.preflight

up: services-check  ## the whole stack: web, worker, beat, Flower and the sandbox; Ctrl-C stops it
	rm -rf .run && mkdir -p .run/metrics
	$(WITH_ENV) $(PY) manage.py migrate --noinput
	$(WITH_ENV) $(PY) manage.py seed_demo
	$(WITH_ENV) DJANGO_SUPERUSER_PASSWORD=admin $(PY) manage.py createsuperuser --noinput \
		--username admin --email admin@example.com 2>/dev/null || true
	@echo "tally: http://127.0.0.1:8000/  admin: /admin/ (admin/admin)  Flower: http://127.0.0.1:5555/"
	$(VENV)/bin/honcho --env .env --procfile Procfile start

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: services-check
	$(PY) -m bench $(BENCH_ARGS)
