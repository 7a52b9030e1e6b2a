"""The Celery app. Configuration lives in Django settings under the CELERY_ namespace."""

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, task_postrun, worker_process_init, worker_process_shutdown
from django.db import connections
from kombu.exceptions import KombuError

from config.logging import stamp_task_ids
from config.tracing import configure_tracing, flush_traces

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# What publishing raises when the broker does not take a message (down, refusing, timing out).
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (KombuError, OSError)

app = Celery("tally")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes the DB connection around every task unless this is set;
# reopening it for each task halves worker throughput. The fixup reads this exact key.
app.conf.CELERY_DB_REUSE_MAX = 1000
# Every log line written inside a task carries its id, even one formatted after it ends.
stamp_task_ids()


# With connections kept across tasks (above), one left broken (a query cut off by a soft time
# limit, a dropped server) would fail every later task of its process. Django checks its
# connections between requests; do the same between tasks: an unusable one is closed and the
# next query opens a new one. A healthy connection costs nothing here.
def drop_broken_database_connections() -> None:
    """Close this process's database connections that are unusable (or past CONN_MAX_AGE).

    Never one inside a transaction: that is a caller's (a test's) to end."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


@task_postrun.connect
def check_database_connections_after_each_task(**kwargs: Any) -> None:
    drop_broken_database_connections()


# Traces (config/tracing.py; off unless an OTLP endpoint is set). Set up in each pool process,
# where tasks run, not in the worker's main process that forks them. The solo pool sends
# worker_process_init too; the threads pool does not, so it is not traced.
@worker_process_init.connect
def trace_pool_process(**kwargs: Any) -> None:
    configure_tracing(service="tally-worker")


# A pool process ends with os._exit, which skips the SDK's exit-time flush: the spans of its
# last tasks would be lost.
@worker_process_shutdown.connect
def flush_pool_process_traces(**kwargs: Any) -> None:
    flush_traces()


@beat_init.connect
def trace_beat(**kwargs: Any) -> None:
    configure_tracing(service="tally-beat")
