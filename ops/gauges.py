"""The state-now gauges of /metrics, read from PostgreSQL and the broker and kept for a few
seconds in the shared cache.

Two rules keep a scrape cheap however large the delivery log grows (issue: six scrapes a
second over 1 M deliveries took the webhook's p50 from 8 ms to 1 s):

- Only rows someone may have to act on are counted: unfinished and failed deliveries, through
  the partial index `delivery_watched_status`, never a scan of the processed and ignored ones
  (a healthy log is almost all of those, and grows without end).
- A reading is shared by every web process through the cache: within REFRESH_AFTER_SECONDS
  every scrape reuses it; after that one scrape reads anew while the others still use the
  cached reading, which expires at LIVE_SECONDS. A scrape storm costs one read per 10-15 s.
"""

import logging
import time
from typing import Any

from django.core.cache import cache
from django.db import DatabaseError
from django.db.models import Count, Min
from django.db.models.functions import Now
from redis.exceptions import RedisError

from ledger.selectors import needing_attention, open_disputes
from tasks.broker import queue_depth, queue_names
from webhooks.models import Delivery

logger = logging.getLogger(__name__)

LIVE_SECONDS = 15  # no scrape shows a reading older than this
REFRESH_AFTER_SECONDS = 10  # from here one scrape reads anew, the others keep the cached one
_READING_KEY = "metrics:live-gauges"
_REFRESHING_KEY = "metrics:live-gauges:refreshing"

# Plain JSON-like values, so a reading cached by one release reads the same in the next.
# {"read_at": epoch seconds,
#  "deliveries": {status: [count, age of the oldest in seconds]} or None (unreadable),
#  "disputes_open": int or None, "attention": {reason: count} or None,
#  "queue_depths": {queue: messages} (a queue missing: the broker did not answer)}
Reading = dict[str, Any]


def live_reading() -> Reading:
    """The gauges now: the shared reading while it is fresh, else a new one."""
    cached = _cached_reading()
    if cached is not None:
        fresh = time.time() - cached["read_at"] < REFRESH_AFTER_SECONDS
        if fresh or not _claim_refresh():
            return cached
    reading = read_live_state()
    _store(reading)
    return reading


def forget_live_reading() -> None:
    """Drop the shared reading: the next scrape reads PostgreSQL and the broker anew."""
    cache.delete_many([_READING_KEY, _REFRESHING_KEY])


def read_live_state() -> Reading:
    """Ask PostgreSQL and the broker now. A source that fails is left out with a warning:
    the counters matter most exactly when something is down."""
    reading: Reading = {"read_at": time.time()}
    try:
        reading["deliveries"] = watched_deliveries()
    except DatabaseError as exc:
        _unavailable("delivery gauges unavailable; samples skipped", exc)
        reading["deliveries"] = None
    try:
        reading["disputes_open"] = open_disputes()
        reading["attention"] = needing_attention()
    except DatabaseError as exc:
        _unavailable("payment gauges unavailable; samples skipped", exc)
        reading["disputes_open"] = reading["attention"] = None
    reading["queue_depths"] = _queue_depths()
    return reading


def watched_deliveries() -> dict[str, list[float]]:
    """{status: [count, age of its oldest delivery in seconds]} for the watched statuses.

    One GROUP BY whose WHERE is the partial index's own condition, so PostgreSQL reads only
    that index. The age is computed by PostgreSQL against its own clock, the one that stamped
    received_at, so a web host's clock skew cannot make it negative or inflate it.
    """
    rows = (
        Delivery.objects.filter(status__in=Delivery.WATCHED)
        .order_by()
        .values("status")
        .annotate(count=Count("*"), age=Now() - Min("received_at"))
    )
    return {row["status"]: [row["count"], max(row["age"].total_seconds(), 0.0)] for row in rows}


def _queue_depths() -> dict[str, int]:
    depths: dict[str, int] = {}
    for queue in queue_names():
        try:
            depths[queue] = queue_depth(queue)
        except Exception as exc:  # any broker failure: skip the sample, never the scrape
            logger.warning(
                "broker unreachable; queue depth skipped",
                extra={"queue": queue, "error": f"{type(exc).__name__}: {exc}"[:200]},
            )
            break  # the other queues live on the same broker: don't wait for each
    return depths


def _cached_reading() -> Reading | None:
    try:
        cached: Reading | None = cache.get(_READING_KEY)
    except RedisError as exc:
        _unavailable("metrics cache unavailable; gauges read directly", exc)
        return None
    return cached


def _claim_refresh() -> bool:
    """True for the one scrape that reads anew; the lock lapses if that scrape dies."""
    try:
        return bool(cache.add(_REFRESHING_KEY, 1, timeout=LIVE_SECONDS - REFRESH_AFTER_SECONDS))
    except RedisError:
        return True


def _store(reading: Reading) -> None:
    try:
        cache.set(_READING_KEY, reading, timeout=LIVE_SECONDS)
        cache.delete(_REFRESHING_KEY)
    except RedisError as exc:
        _unavailable("metrics cache unavailable; gauges read directly", exc)


def _unavailable(message: str, exc: Exception) -> None:
    logger.warning(message, extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
