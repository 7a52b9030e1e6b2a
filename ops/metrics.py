"""GET /metrics: every process's counters, plus gauges of the state now (docs/operations.md)."""

import hmac
import logging
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min
from django.db.models.functions import Now
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from config.clients import is_from_this_host
from config.metrics import multiprocess_dir
from ledger.models import Payment
from ledger.selectors import needing_attention, open_disputes
from tasks.broker import queue_depth, queue_names
from webhooks.models import Delivery

logger = logging.getLogger(__name__)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for a scraper that may see it (see may_scrape)."""
    refused = may_scrape(request)
    if refused is not None:
        return refused
    body = generate_latest(scrape_registry())
    response = HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response["Cache-Control"] = "no-store"
    return response


def may_scrape(request: HttpRequest) -> HttpResponse | None:
    """None when the caller may read the metrics, else the refusal to answer with.

    The metrics show business figures and the state of the pipeline, so they are not public
    (guarantee 8): with METRICS_TOKEN set the caller must send it as a bearer token (compared
    in constant time); without one only this host may scrape, never through a proxy.
    """
    token = settings.METRICS_TOKEN
    if not token:
        if is_from_this_host(request):
            return None
        return HttpResponse("metrics are served to this host only\n", status=403)
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode()):
        return None
    refused = HttpResponse("a bearer token is required\n", status=401)
    refused["WWW-Authenticate"] = 'Bearer realm="tally metrics"'
    return refused


def scrape_registry() -> CollectorRegistry:
    """What one scrape exports.

    In multiprocess mode the counters come from the files every gunicorn and Celery process
    writes (this process's own included); the default registry would hold only this one
    worker's share. Either way the live gauges are added from the database and the broker.
    """
    registry = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(LiveStateCollector())
    return registry


class LiveStateCollector:
    """Gauges that describe the state now, computed at scrape time.

    Not kept per process: a gauge set by one gunicorn worker is stale as soon as another
    worker or a Celery task moves a delivery, and summing per-process copies would be wrong.
    PostgreSQL and the broker know the truth, so ask them. A failing source skips its
    samples (with a warning) instead of failing the scrape: the counters matter most
    exactly when something is down.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._deliveries()
        yield from self._payments()
        yield self._queue_depths()

    def _payments(self) -> Iterator[GaugeMetricFamily]:
        try:
            disputes, attention = open_disputes(), needing_attention()
        except DatabaseError as exc:
            logger.warning(
                "payment gauges unavailable; samples skipped",
                extra={"error": f"{type(exc).__name__}: {exc}"[:200]},
            )
            return
        yield GaugeMetricFamily(
            "tally_disputes_open", "Payments under an open chargeback now.", value=disputes
        )
        needing = GaugeMetricFamily(
            "tally_payments_needing_attention",
            "Payments waiting for a person's decision, by reason.",
            labels=["reason"],
        )
        for reason in Payment.Attention.values:
            if reason:
                needing.add_metric([reason], attention.get(reason, 0))
        yield needing

    def _deliveries(self) -> Iterator[GaugeMetricFamily]:
        try:
            by_status = _deliveries_by_status()
        except DatabaseError as exc:
            logger.warning(
                "delivery gauges unavailable; samples skipped",
                extra={"error": f"{type(exc).__name__}: {exc}"[:200]},
            )
            return
        counts = GaugeMetricFamily(
            "tally_deliveries", "Deliveries in the log by status now.", labels=["status"]
        )
        for status in Delivery.Status.values:
            counts.add_metric([status], by_status.get(status, (0, None))[0])
        yield counts
        waiting = [age for status, (_, age) in by_status.items() if status in Delivery.UNFINISHED]
        oldest = max(waiting, default=timedelta(0))
        yield GaugeMetricFamily(
            "tally_oldest_unprocessed_delivery_age_seconds",
            "Age of the oldest delivery still received, queued or processing; 0 when none.",
            value=max(oldest.total_seconds(), 0.0),
        )

    def _queue_depths(self) -> GaugeMetricFamily:
        depths = GaugeMetricFamily(
            "tally_queue_depth", "Messages waiting in each broker queue.", labels=["queue"]
        )
        for queue in queue_names():
            try:
                depths.add_metric([queue], queue_depth(queue))
            except Exception as exc:  # any broker failure: skip the sample, never the scrape
                logger.warning(
                    "broker unreachable; queue depth skipped",
                    extra={"queue": queue, "error": f"{type(exc).__name__}: {exc}"[:200]},
                )
                break  # the other queues live on the same broker: don't wait for each
        return depths


def _deliveries_by_status() -> dict[str, tuple[int, timedelta]]:
    """{status: (count, age of its oldest delivery)} in one GROUP BY.

    The age is computed by PostgreSQL against its own clock, the one that stamped
    received_at, so a web host's clock skew cannot make it negative or inflate it.
    """
    rows = (
        Delivery.objects.order_by()
        .values("status")
        .annotate(count=Count("pk"), age=Now() - Min("received_at"))
    )
    return {row["status"]: (row["count"], row["age"]) for row in rows}
