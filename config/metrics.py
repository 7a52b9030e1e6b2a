"""Prometheus metrics kept by the processes that do the work (web, worker, commands).

Under gunicorn and Celery's prefork pool each process counts on its own, so one process's
/metrics would show only its share. Set PROMETHEUS_MULTIPROC_DIR to one directory shared by
every web and worker process on the host, emptied before they start: prometheus-client then
keeps each process's samples in files there and /metrics (ops/metrics.py) adds them
up. Gauges of the state now (deliveries by status, queue depth) are not kept here: they are
read at scrape time, where a per-process value would be stale the moment it was written.
"""

import os

from django.core.exceptions import ImproperlyConfigured
from prometheus_client import Counter, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str:
    """The shared directory of multiprocess mode, or "" when each process counts alone."""
    return os.environ.get(MULTIPROC_ENV, "")


# prometheus-client opens its files in this directory as the metrics below are created; a
# missing one would fail on the first count (a webhook answered 500), so say it now.
if multiprocess_dir() and not os.path.isdir(multiprocess_dir()):
    raise ImproperlyConfigured(
        f"{MULTIPROC_ENV}={multiprocess_dir()!r} is not a directory: create it (empty) before "
        "starting web and workers, or unset it"
    )

webhook_deliveries = Counter(
    "tally_webhook_deliveries_total",
    "Every POST to the webhook endpoint, by event type and outcome.",
    ["event", "outcome"],
)
gateway_verify_seconds = Histogram(
    "tally_gateway_verify_seconds",
    "Verify calls to the gateway, by outcome.",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
payments_settled = Counter(
    "tally_payments_settled_total", "Settle attempts, by outcome.", ["outcome"]
)
votes_credited = Counter("tally_votes_credited_total", "Votes added to contestants.")
votes_reversed = Counter("tally_votes_reversed_total", "Votes taken back by reversals.")
delivery_messages_sent = Counter(
    "tally_delivery_messages_sent_total",
    "Messages published to process deliveries, by who sent them "
    "(webhook, sweeper, replay, retry, cooldown).",
    ["by"],
)
