# The front door: make install | up | test | lint | bench
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Each recipe line that needs the settings loads them from .env (make up creates it).
WITH_ENV := set -a; . ./.env; set +a;

# Runs a command with a PostgreSQL and a Redis that answer: the configured ones, or private ones
# under .run/ that stop with the command (devstack/services.py).
WITH_SERVICES := $(PY) -m devstack.services run --

.PHONY: install up up-stack test lint format bench lock services-check flower-login

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	touch $@

install: $(VENV)/.installed

lock:  ## re-resolve requirements.lock after editing pyproject.toml (needs uv)
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -q --no-header -o requirements.lock

# Flower refuses an empty or example password: each checkout's .env gets its own.
.env:
	cp .env.example .env

# Flower refuses to start without a login of its own (config/flower.py): give .env one, once,
# whether make up wrote .env or you did.
flower-login: .env
	@grep -q '^FLOWER_BASIC_AUTH=.' .env || { sed -i '/^FLOWER_BASIC_AUTH=/d' .env; \
		echo "FLOWER_BASIC_AUTH=admin:$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(18))')" >> .env; \
		echo "make: wrote a Flower login into .env"; }

services-check: install .env
	$(WITH_ENV) $(PY) -m ops.preflight

up: install .env flower-login  ## the whole stack: web, worker, beat, Flower and the sandbox; Ctrl-C stops it
	@# A fresh .run/ but for the private services' directories: a private PostgreSQL keeps its
	@# data like a system one, and either may be in use by a `make test` next door.
	mkdir -p .run && find .run -mindepth 1 -maxdepth 1 ! -name postgres ! -name redis \
		-exec rm -rf {} + && mkdir -p .run/metrics
	$(WITH_ENV) $(WITH_SERVICES) $(MAKE) --no-print-directory up-stack

# make up's steps, run by devstack.services with the settings from .env in the environment and
# its DATABASE_URL and REDIS_URL: nothing here reads .env again, lest it point them back.
up-stack:
	$(PY) -m ops.preflight
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	DJANGO_SUPERUSER_PASSWORD=admin $(PY) manage.py createsuperuser --noinput \
		--username admin --email admin@example.com 2>/dev/null || true
	@echo "tally: http://127.0.0.1:$${WEB_PORT}/  admin: /admin/ (admin/admin)" \
		" Flower: http://127.0.0.1:$${FLOWER_PORT}/ ($${FLOWER_BASIC_AUTH}, from .env)"
	$(VENV)/bin/honcho --env /dev/null --procfile Procfile start

# The suite's Redis database is 15 (tests/environment.py) unless REDIS_URL names another.
test: install
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/15} $(WITH_SERVICES) \
		$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(VENV)/bin/mypy
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: services-check
	$(PY) -m bench $(BENCH_ARGS)
