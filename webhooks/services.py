"""Writes to the delivery log."""

from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from tasks.deliveries import enqueue_deliveries
from webhooks.events import ParsedEvent
from webhooks.models import Delivery

# One statement stores a new event or counts a repeat; xmax = 0 only on a freshly inserted row.
_UPSERT = f"""
INSERT INTO {Delivery._meta.db_table} (
    dedup_key, event, reference, gateway_id, raw_body, payload, source_ip, status,
    attempts, outcome, last_error, received_at, delivery_count, last_delivered_at, stale_after
) VALUES (
    %s, %s, %s, %s, %s, %s::jsonb, %s, %s,
    0, '', '', now(), 1, now(), now() + make_interval(secs => %s)
)
ON CONFLICT (dedup_key) DO UPDATE SET
    delivery_count = {Delivery._meta.db_table}.delivery_count + 1,
    last_delivered_at = EXCLUDED.last_delivered_at
RETURNING id, (xmax = 0) AS inserted
"""


@dataclass(frozen=True)
class Recorded:
    delivery_id: int
    is_new: bool


def record_delivery(*, parsed: ParsedEvent, source_ip: str | None) -> Recorded:
    """Store a delivery (or count a repeat) and, for a new one, enqueue it after commit."""
    with connection.cursor() as cursor:
        cursor.execute(
            _UPSERT,
            [
                parsed.dedup_key,
                parsed.event,
                parsed.reference,
                parsed.gateway_id,
                parsed.text,
                parsed.text,
                source_ip or None,
                Delivery.Status.QUEUED,
                settings.STUCK_AFTER_SECONDS,
            ],
        )
        delivery_id, inserted = cursor.fetchone()
    if inserted:
        transaction.on_commit(lambda: enqueue_deliveries([delivery_id]))
    return Recorded(delivery_id=delivery_id, is_new=inserted)
