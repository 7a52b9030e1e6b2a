"""The live gauges cost the same at 10 M deliveries as at 1 k: they read only the watched
statuses through a partial index, and one reading serves every scrape for up to 15 s."""

import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ops import gauges
from tests.factories import DeliveryFactory
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db

FINISHED_ROWS = 20_000


def queued_gauge(client: Client) -> float:
    text = client.get("/metrics").content.decode()
    line = next(x for x in text.splitlines() if x.startswith('tally_deliveries{status="queued"}'))
    return float(line.rsplit(" ", 1)[1])


def delivery_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries if "webhooks_delivery" in q["sql"]]


def test_scrapes_within_ten_seconds_share_one_reading(client, broker):
    gauges.forget_live_reading()
    DeliveryFactory()
    assert queued_gauge(client) == 1
    DeliveryFactory()

    with CaptureQueriesContext(connection) as queries:
        cached = [queued_gauge(client) for _ in range(5)]

    assert cached == [1, 1, 1, 1, 1]  # the shared reading, not the database
    assert delivery_queries(queries) == []


def age_the_shared_reading(client: Client, seconds: float) -> None:
    """One queued delivery read by a scrape `seconds` ago, and one more added since."""
    gauges.forget_live_reading()
    DeliveryFactory()
    queued_gauge(client)
    reading = cache.get(gauges._READING_KEY)
    cache.set(gauges._READING_KEY, {**reading, "read_at": time.time() - seconds}, timeout=5)
    DeliveryFactory()


def test_after_ten_seconds_one_scrape_reads_anew(client, broker):
    age_the_shared_reading(client, 11)

    with CaptureQueriesContext(connection) as queries:
        assert queued_gauge(client) == 2
    assert len(delivery_queries(queries)) == 1


def test_while_another_scrape_refreshes_the_cached_reading_is_served(client, broker):
    age_the_shared_reading(client, 11)
    assert cache.add(gauges._REFRESHING_KEY, 1, timeout=5)  # another process is at it

    with CaptureQueriesContext(connection) as queries:
        assert queued_gauge(client) == 1
    assert delivery_queries(queries) == []


def test_a_reading_expires_from_the_cache_within_fifteen_seconds(client, broker):
    gauges.forget_live_reading()
    queued_gauge(client)

    raw = redis.Redis.from_url(settings.REDIS_URL)
    try:
        ttl = raw.ttl(cache.make_and_validate_key(gauges._READING_KEY))
    finally:
        raw.close()

    assert 0 < ttl <= 15


def test_without_the_cache_the_gauges_are_read_directly(client, broker, settings):
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}
    }
    DeliveryFactory()

    assert Client(raise_request_exception=True).get("/metrics").status_code == 200


def seed_finished_deliveries(count: int) -> None:
    """`count` processed deliveries in one statement, as the bench seeds a million."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO webhooks_delivery (dedup_key, event, reference, gateway_id, raw_body,
                payload, status, attempts, outcome, last_error, received_at, processed_at,
                delivery_count, last_delivered_at, stale_after)
            SELECT md5(n::text), 'charge.success', 'tly-seed' || n, '', '{}', '{}',
                'processed', 1, 'credited', '', now() - interval '1 day', now(), 1, now(), now()
            FROM generate_series(1, %s) AS n
            """,
            [count],
        )
        cursor.execute("ANALYZE webhooks_delivery")


def test_the_delivery_gauges_read_the_partial_index_not_the_log(broker):
    seed_finished_deliveries(FINISHED_ROWS)
    DeliveryFactory(received_at=timezone.now() - timedelta(minutes=3))
    DeliveryFactory(status=Delivery.Status.FAILED)

    with CaptureQueriesContext(connection) as queries:
        by_status = gauges.watched_deliveries()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {queries[0]['sql']}")
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert set(by_status) == {"queued", "failed"}
    assert by_status["queued"][0] == 1 and 180 <= by_status["queued"][1] < 240
    assert "delivery_watched_status" in plan
    assert "Seq Scan" not in plan


def test_the_payment_gauges_can_read_their_partial_indexes():
    from ledger.selectors import needing_attention, open_disputes

    plans = []
    for gauge in (open_disputes, needing_attention):
        with CaptureQueriesContext(connection) as queries:
            gauge()
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")  # empty tables: make the planner show it
            try:
                cursor.execute(f"EXPLAIN {queries[0]['sql']}")
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
            finally:
                cursor.execute("SET enable_seqscan = on")

    assert "dispute_open" in plans[0]
    assert "payment_needs_attention" in plans[1]
