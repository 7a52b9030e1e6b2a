"""Where the bench runs: its own database and Redis db, and every setting pinned.

The bench drops and recreates its database, so the name is fixed here and never read from the
environment: a DATABASE_URL left over from a shell, `make up` or the test suite (which points
at Redis db 15 and a test database) must not aim it at someone else's data. Every setting from
docs/configuration.md is pinned to its default too, so a figure means the same on every machine.
"""

import os
from dataclasses import dataclass
from pathlib import Path

POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"
DATABASE_NAME = "tally_bench"
DATABASE_URL = f"{POSTGRES_SERVER}/{DATABASE_NAME}"
REDIS_DB = "14"
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
PAYSTACK_SECRET_KEY = "sk_test_tally_bench"
HOST = "127.0.0.1"
# Bench-only tables, created by the bench: the baseline view's one row per delivery, and the
# counters the baseline tasks add to.
BASELINE_TABLE = "bench_baseline_delivery"
BASELINE_COUNTER_TABLE = "bench_baseline_counter"

# Settings the caller's environment might carry and that would change what is measured.
_PINNED = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DJANGO_SECRET_KEY": "bench-only-django-secret",
    "DEBUG": "0",
    "ALLOWED_HOSTS": f"{HOST},localhost",
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    "PAYSTACK_SECRET_KEY": PAYSTACK_SECRET_KEY,
    "PAYSTACK_SECRET_KEY_PREVIOUS": "",
    "PAYSTACK_TIMEOUT": "10",
    "PAYSTACK_WEBHOOK_IPS": "",
    "PROXY_HOPS": "0",
    "WEBHOOK_MAX_BYTES": "262144",
    "STUCK_AFTER_SECONDS": "60",
    "RECONCILE_AFTER_SECONDS": "900",
    "PAYMENT_EXPIRES_AFTER_SECONDS": "86400",
    # The gateway is the sandbox, over http: allowed with DEBUG=0 only with this.
    "TALLY_SANDBOX": "1",
    # The metrics scenario scrapes from this host without a token, as a local Prometheus would.
    "METRICS_TOKEN": "",
    # Every request comes from this one host, standing in for thousands of fans: the per-address
    # limit would refuse nearly all of the storm's callbacks, so it is raised here.
    "RATE_LIMIT_PAYMENTS": "1000000/m",
    "MAX_DELIVERY_ATTEMPTS": "10",
    "VERIFY_COOLDOWN_SECONDS": "30",
    # One delivery per settling transaction unless a scenario's batched side asks for more
    # (bench.processes.Stack.worker passes its own value to the worker).
    "SETTLE_BATCH_SIZE": "1",
    # Logging costs: every process logs warnings only, as production would under load.
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "WARNING",
    # Celery refuses to start as root without it; the bench runs wherever `make bench` does.
    "C_FORCE_ROOT": "1",
}
# Set elsewhere, these would change gunicorn's process model, or how long a batch waits to
# fill, behind the bench's back: without them the product's defaults apply.
_DROPPED = ("WEB_CONCURRENCY", "GUNICORN_CMD_ARGS", "SETTLE_BATCH_WAIT_MS")


@dataclass(frozen=True)
class Ports:
    sandbox: int
    web: int
    baseline_web: int

    @property
    def sandbox_url(self) -> str:
        return f"http://{HOST}:{self.sandbox}"


def process_environment(ports: Ports, metrics_dir: Path) -> dict[str, str]:
    """The environment of every process the bench starts, and of the bench itself.

    Metrics are kept as in production (counters survive across gunicorn workers), in a
    multiprocess directory of the run's own, so their cost is part of what is measured.
    """
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env.update(_PINNED)
    env["PAYSTACK_BASE_URL"] = ports.sandbox_url
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return env


def configure_this_process(env: dict[str, str]) -> None:
    """Point this process's Django and Celery at the bench stack, then set Django up.

    The bench reads and writes the database through tally's own models and selectors, and
    enqueues through tally's Celery app, so its checks use the same definitions as the app.
    """
    for name in _DROPPED:
        os.environ.pop(name, None)
    os.environ.update(env)
    import django

    django.setup()
    from config.celery_app import app

    # The bench enqueues backlogs by the thousand before a clock starts: make sure no
    # "task-sent" event slows that down, whatever the settings say (they turn it off too).
    app.conf.task_send_sent_event = False
