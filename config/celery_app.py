"""The Celery app. Configuration lives in Django settings under the CELERY_ namespace."""

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_process_init, worker_process_shutdown
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
