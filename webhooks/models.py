"""The delivery log: every distinct Paystack event, stored untrusted before we answer 200.

Its lifecycle (docs/contract.md, delivery statuses) is written here and nowhere else, as
methods of the queryset: claim, finish, requeue, mark unsent, queue again.
"""

from datetime import timedelta
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone


class DeliveryQuerySet(models.QuerySet["Delivery"]):
    def claim(self, delivery_id: int, *, lease_seconds: int) -> "Delivery | None":
        """Take the delivery for processing with one conditional UPDATE (a lease on the row).

        Whoever's UPDATE matches wins; a duplicate or re-enqueued task for a delivery that is
        claimed (lease not expired) or finished gets None and must not call the gateway.
        """
        # UPDATE … RETURNING: the claim and the read of what was claimed in one round trip.
        claimed = self.raw(
            f"""
            UPDATE {Delivery._meta.db_table}
            SET status = %s, attempts = attempts + 1, stale_after = %s
            WHERE id = %s AND (
                status IN (%s, %s) OR (status = %s AND stale_after < %s)
            )
            RETURNING id, event, reference, attempts
            """,
            [
                Delivery.Status.PROCESSING,
                timezone.now() + timedelta(seconds=lease_seconds),
                delivery_id,
                Delivery.Status.RECEIVED,
                Delivery.Status.QUEUED,
                Delivery.Status.PROCESSING,
                timezone.now(),
            ],
        )
        return next(iter(claimed), None)

    def finish(self, delivery_id: int, *, status: str, outcome: str = "", error: str = "") -> None:
        """Record how processing ended: processed, ignored or failed."""
        self.filter(pk=delivery_id).update(
            status=status, outcome=outcome, last_error=error, processed_at=timezone.now()
        )

    def requeue(self, delivery_id: int, *, error: str, not_before_seconds: float) -> None:
        """Give the lease back while a retry waits; the sweeper leaves it alone until then."""
        self.filter(pk=delivery_id).update(
            status=Delivery.Status.QUEUED,
            last_error=error,
            stale_after=timezone.now() + timedelta(seconds=not_before_seconds),
        )

    def data_of(self, delivery_id: int) -> dict[str, Any]:
        """The event's `data` object as stored (the claim does not read the body)."""
        payload = self.filter(pk=delivery_id).values_list("payload", flat=True).get()
        data = payload.get("data") if isinstance(payload, dict) else None
        return data if isinstance(data, dict) else {}

    def mark_unsent(self, delivery_ids: list[int]) -> None:
        """The broker did not take these: back to `received`, for the sweeper to send."""
        self.filter(pk__in=delivery_ids, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.RECEIVED
        )

    def queue_again(self, delivery_ids: list[int], *, lease_seconds: int) -> None:
        """Back to `queued` with a fresh `stale_after`, as a new message is about to be sent.

        `attempts` and `last_error` stay as history.
        """
        self.filter(pk__in=delivery_ids).update(
            status=Delivery.Status.QUEUED,
            stale_after=timezone.now() + timedelta(seconds=lease_seconds),
            processed_at=None,
        )


class Delivery(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received"  # stored, but the broker did not take the task (yet)
        QUEUED = "queued"
        PROCESSING = "processing"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    UNFINISHED = (Status.RECEIVED, Status.QUEUED, Status.PROCESSING)
    # What /metrics counts: the statuses someone may have to act on. A healthy log grows by
    # processed and ignored rows without end; these stay few (ops/gauges.py).
    WATCHED = (*UNFINISHED, Status.FAILED)

    dedup_key = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 of the event's identity; repeats collide."
    )
    event = models.CharField(max_length=100, db_index=True)
    reference = models.CharField(max_length=255, blank=True, db_index=True)
    gateway_id = models.CharField(max_length=64, blank=True)
    raw_body = models.TextField(help_text="The body exactly as received (UTF-8).")
    payload = models.JSONField()
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    attempts = models.IntegerField(default=0)
    outcome = models.CharField(max_length=200, blank=True, help_text="What processing did.")
    last_error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    delivery_count = models.IntegerField(default=1)
    last_delivered_at = models.DateTimeField(default=timezone.now)
    stale_after = models.DateTimeField(
        default=timezone.now,
        help_text="Unfinished after this, the sweeper treats the delivery as lost and requeues it.",
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
