"""The delivery log: every distinct Paystack event, stored untrusted before we answer 200.

Its lifecycle (docs/contract.md, delivery statuses) is written here and nowhere else, as
methods of the queryset: claim (one message's delivery, or a batch's), finish, requeue, mark unsent,
queue again. Every time in it is the database's clock, the one that stamps the leases, so
hosts' clocks never matter.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connection, models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone


class Message(NamedTuple):
    """What a process_delivery message carries: which delivery, and which of its messages.

    Every enqueue (the webhook, the sweeper, a replay, a retry) bumps the delivery's
    generation and sends it along; only a message of the current generation does any work.
    """

    delivery_id: int
    generation: int


class DeliveryQuerySet(models.QuerySet["Delivery"]):
    def claim(
        self, delivery_id: int, generation: int | None, *, lease_seconds: int, max_attempts: int
    ) -> "Delivery | None":
        """`claim_all` for one message: the claimed delivery, or None."""
        claimed = self.claim_all(
            [(delivery_id, generation)], lease_seconds=lease_seconds, max_attempts=max_attempts
        )
        return next(iter(claimed), None)

    def claim_all(
        self,
        messages: Iterable[tuple[int, int | None]],
        *,
        lease_seconds: int,
        max_attempts: int,
    ) -> list["Delivery"]:
        """Take the deliveries these messages name for processing, with one conditional
        UPDATE (a lease on each row); returns those claimed, in id order.

        A message must be its delivery's current one (its generation; None is a message sent
        before generations existed and matches any), the delivery `received` or `queued`, and
        its not-before time (a retry's wait) past; or the lease of the worker that held it
        must have run out, and taking over bumps the generation so that worker can no longer
        finish it. Anything else matches nothing: its message exits without a gateway call.
        The claim past `max_attempts` ends the delivery `failed` instead of processing it.
        """
        # Every message goes in, duplicates too: of two messages of one delivery (an older
        # generation's and the current one's), the current one claims it.
        wanted = sorted(messages, key=lambda message: message[0])
        if not wanted:
            return []
        table = Delivery._meta.db_table
        # The cap counts claims since a person last replayed the delivery: a replay after the
        # cause was fixed gets a fresh budget, while the sweeper's re-sends never reset it.
        within_cap = "delivery.attempts - delivery.attempts_before_replay < %(cap)s"
        # UPDATE … RETURNING: the claim and the read of what was claimed in one round trip.
        # The rows are locked in id order first, so two batches never deadlock over them.
        claimed = self.raw(
            f"""
            UPDATE {table} AS delivery SET
                generation = delivery.generation
                    + CASE WHEN delivery.status = %(processing)s THEN 1 ELSE 0 END,
                attempts = delivery.attempts + CASE WHEN {within_cap} THEN 1 ELSE 0 END,
                status = CASE WHEN {within_cap} THEN %(processing)s ELSE %(failed)s END,
                outcome = CASE WHEN {within_cap} THEN delivery.outcome ELSE %(capped)s END,
                processed_at = CASE WHEN {within_cap} THEN NULL ELSE statement_timestamp() END,
                stale_after = statement_timestamp() + make_interval(secs => %(lease)s)
            FROM (
                SELECT wanted.id, message.generation
                FROM {table} AS wanted
                JOIN unnest(%(ids)s::integer[], %(generations)s::integer[])
                    AS message(id, generation) ON wanted.id = message.id
                ORDER BY wanted.id
                FOR UPDATE OF wanted
            ) AS message
            WHERE delivery.id = message.id AND (
                (delivery.status IN (%(received)s, %(queued)s)
                 AND delivery.not_before <= statement_timestamp()
                 AND (message.generation IS NULL OR delivery.generation = message.generation))
                OR (delivery.status = %(processing)s
                    AND delivery.stale_after < statement_timestamp())
            )
            RETURNING delivery.id, delivery.event, delivery.reference, delivery.attempts,
                delivery.attempts_before_replay, delivery.generation, delivery.status,
                delivery.last_error
            """,
            {
                "ids": [delivery_id for delivery_id, _ in wanted],
                "generations": [generation for _, generation in wanted],
                "cap": max_attempts,
                "lease": lease_seconds,
                "processing": Delivery.Status.PROCESSING,
                "received": Delivery.Status.RECEIVED,
                "queued": Delivery.Status.QUEUED,
                "failed": Delivery.Status.FAILED,
                "capped": f"gave up after {max_attempts} attempts",
            },
        )
        return sorted(claimed, key=lambda delivery: delivery.pk)

    def finish_together(self, outcomes: Mapping[Message, tuple[str, str]]) -> set[Message]:
        """`finish` for many deliveries in one UPDATE: each `Message` → (status, outcome).
        Returns those whose lease was still held (the others were taken over)."""
        if not outcomes:
            return set()
        held = list(outcomes)
        finished = _returning(
            f"""
            UPDATE {Delivery._meta.db_table} AS delivery SET
                status = done.status, outcome = done.outcome, last_error = '',
                processed_at = statement_timestamp()
            FROM unnest(%s::integer[], %s::integer[], %s::text[], %s::text[])
                AS done(id, generation, status, outcome)
            WHERE delivery.id = done.id AND delivery.generation = done.generation
              AND delivery.status = %s
            RETURNING delivery.id, delivery.generation
            """,
            [
                [message.delivery_id for message in held],
                [message.generation for message in held],
                [outcomes[message][0] for message in held],
                [outcomes[message][1] for message in held],
                Delivery.Status.PROCESSING,
            ],
        )
        return set(finished)

    def finish(self, held: Message, *, status: str, outcome: str = "", error: str = "") -> bool:
        """Record how processing ended (processed, ignored or failed); only the lease holder
        can. False when the lease was lost (another worker took the delivery over)."""
        return bool(
            self.filter(
                pk=held.delivery_id, status=Delivery.Status.PROCESSING, generation=held.generation
            ).update(status=status, outcome=outcome, last_error=error, processed_at=Now())
        )

    def requeue(
        self, held: Message, *, delay_seconds: float, lease_seconds: int, error: str | None
    ) -> Message | None:
        """Give the lease back for a new message due in `delay_seconds` (a retry's wait, or a
        verify cooldown), bumping the generation so that no older message can claim it
        meanwhile; the sweeper leaves it alone until the new one is overdue. Only the lease
        holder can; `error` is recorded (None keeps the last one). The new message, or None."""
        requeued = _returning(
            f"""
            UPDATE {Delivery._meta.db_table} SET
                status = %s, generation = generation + 1,
                last_error = COALESCE(%s, last_error),
                not_before = statement_timestamp() + make_interval(secs => %s),
                stale_after = statement_timestamp() + make_interval(secs => %s)
            WHERE id = %s AND status = %s AND generation = %s
            RETURNING id, generation
            """,
            [
                Delivery.Status.QUEUED,
                error,
                delay_seconds,
                delay_seconds + lease_seconds,
                held.delivery_id,
                Delivery.Status.PROCESSING,
                held.generation,
            ],
        )
        return requeued[0] if requeued else None

    def queue_again(self, delivery_ids: list[int], *, lease_seconds: int) -> list[Message]:
        """Back to `queued`, due now, under a new generation, as a new message is about to be
        sent (sweeper, replay): any older message left in the broker becomes a no-op.

        `attempts` and `last_error` stay as history.
        """
        if not delivery_ids:
            return []
        return _returning(
            f"""
            UPDATE {Delivery._meta.db_table} SET
                status = %s, generation = generation + 1, processed_at = NULL,
                not_before = statement_timestamp(),
                stale_after = statement_timestamp() + make_interval(secs => %s)
            WHERE id = ANY(%s)
            RETURNING id, generation
            """,
            [Delivery.Status.QUEUED, lease_seconds, delivery_ids],
        )

    def mark_unsent(self, messages: list[Message]) -> None:
        """The broker did not take these: back to `received`, for the sweeper to send."""
        for message in messages:
            self.filter(
                pk=message.delivery_id,
                generation=message.generation,
                status=Delivery.Status.QUEUED,
            ).update(status=Delivery.Status.RECEIVED)

    def prune_bodies(self, *, received_before: datetime, limit: int) -> int:
        """Drop the raw body and payload of up to `limit` finished deliveries received before
        the cutoff, oldest first. The row stays (dedup key, event, reference, status,
        outcome), so a late duplicate is still recognised. Returns how many were pruned."""
        batch = list(
            self.filter(
                status__in=Delivery.FINISHED, received_at__lt=received_before, pruned_at=None
            )
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        return self.filter(pk__in=batch, pruned_at=None).update(
            raw_body="", payload={}, pruned_at=Now()
        )

    def data_of(self, delivery_id: int) -> dict[str, Any]:
        """The event's `data` object as stored (the claim does not read the body)."""
        payload = self.filter(pk=delivery_id).values_list("payload", flat=True).get()
        data = payload.get("data") if isinstance(payload, dict) else None
        return data if isinstance(data, dict) else {}

    def lost_candidates(self) -> "models.QuerySet[Delivery]":
        """Queued deliveries whose message is overdue (the sweeper asks the broker about
        them), oldest first. A retry waiting out its delay is not overdue."""
        return self.filter(
            status=Delivery.Status.QUEUED, stale_after__lt=Now(), not_before__lte=Now()
        ).order_by("stale_after", "pk")


def _returning(sql: str, params: list[Any]) -> list[Message]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [Message(delivery_id, generation) for delivery_id, generation in cursor.fetchall()]


class Delivery(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received"  # stored, but the broker did not take the task (yet)
        QUEUED = "queued"
        PROCESSING = "processing"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    UNFINISHED = (Status.RECEIVED, Status.QUEUED, Status.PROCESSING)
    FINISHED = (Status.PROCESSED, Status.IGNORED, Status.FAILED)
    # What /metrics counts: the statuses someone may have to act on. A healthy log grows by
    # processed and ignored rows without end; these stay few (ops/gauges.py).
    WATCHED = (*UNFINISHED, Status.FAILED)

    dedup_key = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 of the event's identity; repeats collide."
    )
    event = models.CharField(max_length=100, db_index=True)
    reference = models.CharField(max_length=255, blank=True, db_index=True)
    gateway_id = models.CharField(max_length=64, blank=True)
    raw_body = models.TextField(
        help_text="The body exactly as received (UTF-8); emptied by retention (pruned_at)."
    )
    payload = models.JSONField()
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    # Defaults in the database too, for rows written with plain SQL (the bench seeds them).
    generation = models.IntegerField(
        default=1,
        db_default=1,
        help_text="Bumped by every enqueue; only a message of this one does work.",
    )
    not_before = models.DateTimeField(
        default=timezone.now,
        db_default=Now(),
        help_text="No message claims the delivery before this (a retry).",
    )
    attempts = models.IntegerField(default=0)
    attempts_before_replay = models.IntegerField(
        default=0,
        db_default=0,
        help_text="Claims before the last replay; MAX_DELIVERY_ATTEMPTS counts those after it.",
    )
    outcome = models.CharField(max_length=200, blank=True, help_text="What processing did.")
    last_error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    delivery_count = models.IntegerField(default=1)
    last_delivered_at = models.DateTimeField(default=timezone.now)
    stale_after = models.DateTimeField(
        default=timezone.now,
        help_text="Unfinished after this, the sweeper asks whether its message was lost.",
    )
    pruned_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention dropped the body and payload."
    )

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["stale_after"],
                condition=Q(status__in=["received", "queued", "processing"]),
                name="delivery_unfinished_stale",
            ),
            # The /metrics gauges read only this: count and oldest per watched status as an
            # index-only scan, the same cost with 10 M finished deliveries as with none.
            models.Index(
                fields=["status", "received_at"],
                condition=Q(status__in=["received", "queued", "processing", "failed"]),
                name="delivery_watched_status",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    status__in=[
                        "received",
                        "queued",
                        "processing",
                        "processed",
                        "ignored",
                        "failed",
                    ]
                ),
                name="delivery_status_valid",
            ),
            models.CheckConstraint(condition=Q(delivery_count__gte=1), name="delivery_count_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.reference}"
