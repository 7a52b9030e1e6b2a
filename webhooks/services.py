"""Writes to the delivery log."""

from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from ledger.operator_log import Record
from tasks.deliveries import enqueue_deliveries, queue_again
from webhooks.events import ParsedEvent
from webhooks.models import Delivery, Message

# One statement stores a new event or counts a repeat; xmax = 0 only on a freshly inserted row.
_UPSERT = f"""
INSERT INTO {Delivery._meta.db_table} (
    dedup_key, event, reference, gateway_id, raw_body, payload, source_ip, status,
    generation, attempts, outcome, last_error, received_at, delivery_count, last_delivered_at,
    not_before, stale_after
) VALUES (
    %s, %s, %s, %s, %s, %s::jsonb, %s, %s,
    1, 0, '', '', now(), 1, now(), now(), now() + make_interval(secs => %s)
)
ON CONFLICT (dedup_key) DO UPDATE SET
    delivery_count = {Delivery._meta.db_table}.delivery_count + 1,
    last_delivered_at = EXCLUDED.last_delivered_at
RETURNING id, generation, (xmax = 0) AS inserted
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
        delivery_id, generation, inserted = cursor.fetchone()
    if inserted:
        message = Message(delivery_id, generation)
        transaction.on_commit(lambda: enqueue_deliveries([message], by="webhook"))
    return Recorded(delivery_id=delivery_id, is_new=inserted)


@dataclass(frozen=True)
class ReplayResult:
    """What one replay did. `sent` is None while the enqueue waits for the caller's commit."""

    replayed_ids: tuple[int, ...]
    already_processed: int  # of the replayed: harmless, the worker finds them settled
    skipped_ids: tuple[int, ...]  # processing under a live lease: a worker has them now
    missing: int  # ids that match no delivery
    sent: int | None = None  # replayed deliveries the broker took; the rest wait as `received`

    @property
    def replayed(self) -> int:
        return len(self.replayed_ids)

    @property
    def skipped(self) -> int:
        return len(self.skipped_ids)

    @property
    def refused_by_broker(self) -> int:
        return 0 if self.sent is None else self.replayed - self.sent


def replay_deliveries(*, delivery_ids: list[int]) -> ReplayResult:
    """Set deliveries back to `queued` and enqueue them again after commit.

    The one replay path for the admin and `replay_events`. A delivery being processed under
    a live lease is skipped: replaying it would put a second worker on it. Any other status
    is fair game, because processing is idempotent: a replayed charge.success whose payment
    is settled costs one SELECT and changes nothing. `attempts` and `last_error` are kept as
    history; `stale_after` moves out so the sweeper leaves the fresh message alone.
    """
    now = timezone.now()
    with transaction.atomic():
        # The row locks order us against a worker's claim: if it claimed first we see
        # `processing` under a live lease and skip; if we lock first, its UPDATE waits and
        # then claims a `queued` row, which is what a replay asks for.
        rows = list(
            Delivery.objects.select_for_update()
            .filter(pk__in=delivery_ids)
            .order_by("pk")
            .values_list("pk", "status", "stale_after")
        )
        skipped = {
            pk
            for pk, status, lease_ends in rows
            if status == Delivery.Status.PROCESSING and lease_ends >= now
        }
        replayed = [pk for pk, _, _ in rows if pk not in skipped]
        sent = queue_again(replayed, by="replay")
        # A replay is a person's decision to try again: the attempt cap starts afresh.
        Delivery.objects.filter(pk__in=replayed).update(attempts_before_replay=F("attempts"))
    status_of = {pk: status for pk, status, _ in rows}
    return ReplayResult(
        replayed_ids=tuple(replayed),
        already_processed=sum(status_of[pk] == Delivery.Status.PROCESSED for pk in replayed),
        skipped_ids=tuple(sorted(skipped)),
        missing=len(set(delivery_ids) - status_of.keys()),
        sent=sent[0] if sent else None,
    )


def note_replay(record: Record, result: ReplayResult) -> None:
    """Tell the operator log what one replay did and which deliveries and payments it touched."""
    record.count(
        {
            "replayed": result.replayed,
            "already_processed": result.already_processed,
            "skipped": result.skipped,
            "missing": result.missing,
            "refused_by_broker": result.refused_by_broker,
        }
    )
    references = Delivery.objects.filter(pk__in=result.replayed_ids).exclude(reference="")
    record.touched(
        deliveries=result.replayed_ids,
        payments=references.values_list("reference", flat=True).distinct(),
    )
