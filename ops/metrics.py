"""GET /metrics: every process's counters, plus gauges of the state now (docs/operations.md)."""

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from config.clients import is_from_this_host
from config.metrics import multiprocess_dir
from ledger.models import Payment
from ops.gauges import live_reading
from webhooks.models import Delivery


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
    """Gauges that describe the state now, from the shared reading (ops/gauges.py).

    Not kept per process: a gauge set by one gunicorn worker is stale as soon as another
    worker or a Celery task moves a delivery, and summing per-process copies would be wrong.
    PostgreSQL and the broker know the truth; a source that could not be read skips its
    samples instead of failing the scrape.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reading = live_reading()
        if reading["deliveries"] is not None:
            yield from self._deliveries(reading["deliveries"])
        if reading["disputes_open"] is not None:
            yield from self._payments(reading["disputes_open"], reading["attention"])
        yield self._queue_depths(reading["queue_depths"])

    def _payments(self, disputes: int, attention: dict[str, int]) -> Iterator[GaugeMetricFamily]:
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

    def _deliveries(self, by_status: dict[str, list[float]]) -> Iterator[GaugeMetricFamily]:
        # processed and ignored are left out: counting them exactly means reading the whole
        # log at every scrape (docs/operations.md, metrics).
        counts = GaugeMetricFamily(
            "tally_deliveries",
            "Deliveries in the log now, by status: received, queued, processing and failed.",
            labels=["status"],
        )
        for status in Delivery.WATCHED:
            counts.add_metric([str(status)], by_status.get(status, [0, 0.0])[0])
        yield counts
        waiting = [by_status[status][1] for status in Delivery.UNFINISHED if status in by_status]
        yield GaugeMetricFamily(
            "tally_oldest_unprocessed_delivery_age_seconds",
            "Age of the oldest delivery still received, queued or processing; 0 when none.",
            value=max(waiting, default=0.0),
        )

    def _queue_depths(self, depths: dict[str, int]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "tally_queue_depth", "Messages waiting in each broker queue.", labels=["queue"]
        )
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        return family
