"""Processing of stored webhook deliveries: claim, verify with the gateway, settle, record."""

import logging
import random
from datetime import timedelta

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.celery_app import PUBLISH_ERRORS
from ledger.paystack import GatewayRejected, GatewayUnavailable
from tasks.payments import reverse_verified, settle_verified
from webhooks.models import Delivery

logger = logging.getLogger(__name__)

MAX_RETRIES = 8
BACKOFF_FACTOR = 2
BACKOFF_MAX_SECONDS = 600  # well under Redis' visibility timeout (3600 s)
# What each event type does; any other type is stored and ignored.
ACTIONS = {"charge.success": settle_verified, "refund.processed": reverse_verified}


def enqueue_deliveries(delivery_ids: list[int]) -> int:
    """Hand deliveries to the broker; those it will not take go back to `received` for the
    sweeper. Returns how many were sent. Call after commit, never inside a transaction."""
    for position, delivery_id in enumerate(delivery_ids):
        try:
            process_event.delay(delivery_id)
        except PUBLISH_ERRORS as exc:
            unsent = delivery_ids[position:]
            Delivery.objects.filter(pk__in=unsent, status=Delivery.Status.QUEUED).update(
                status=Delivery.Status.RECEIVED
            )
            logger.error(
                "broker unavailable; delivery stored and left for the sweeper",
                extra={
                    "event_id": delivery_id,
                    "outcome": "left_for_sweeper",
                    "unsent": len(unsent),
                    "error": repr(exc),
                },
            )
            return position
    return len(delivery_ids)


def queue_again(delivery_ids: list[int]) -> list[int]:
    """Set deliveries back to `queued` with a fresh `stale_after` and enqueue them after commit.

    Call inside the transaction that holds their row locks. The returned list receives, once
    committed, how many the broker took (the rest wait as `received` for the sweeper).
    """
    Delivery.objects.filter(pk__in=delivery_ids).update(
        status=Delivery.Status.QUEUED,
        stale_after=timezone.now() + timedelta(seconds=settings.STUCK_AFTER_SECONDS),
        processed_at=None,
    )
    sent: list[int] = []
    transaction.on_commit(lambda: sent.append(enqueue_deliveries(delivery_ids)))
    return sent


@shared_task(
    bind=True,
    name="tally.process_event",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.PAYSTACK_TIMEOUT + 20,
    time_limit=settings.PAYSTACK_TIMEOUT + 40,
)
def process_event(self, event_id: int) -> str:
    delivery = Delivery.objects.claim(event_id, lease_seconds=settings.STUCK_AFTER_SECONDS)
    if delivery is None:
        # Another task holds the lease, or the delivery is finished: never call the gateway.
        logger.info(
            "delivery already claimed or finished",
            extra={"event_id": event_id, "outcome": "skipped"},
        )
        return "skipped"
    context = {"event_id": event_id, "event": delivery.event, "reference": delivery.reference}
    action = ACTIONS.get(delivery.event)
    if action is None:
        return _finish(delivery, Delivery.Status.IGNORED, f"{delivery.event} is not acted on")

    def record(outcome: str) -> None:
        _finish(delivery, Delivery.Status.PROCESSED, outcome)

    try:
        outcome = action(delivery.reference, record=record)
    except GatewayUnavailable as exc:
        if self.request.retries >= MAX_RETRIES:
            return _finish(delivery, Delivery.Status.FAILED, "gave up retrying", error=str(exc))
        countdown = _backoff(self.request.retries, exc.retry_after)
        Delivery.objects.requeue(
            event_id, error=str(exc), not_before_seconds=countdown + settings.STUCK_AFTER_SECONDS
        )
        logger.warning(
            "gateway unavailable; retrying",
            extra={
                **context,
                "outcome": "retrying",
                "error": str(exc),
                "countdown": round(countdown, 1),
            },
        )
        raise self.retry(countdown=countdown, exc=exc) from exc
    except GatewayRejected as exc:
        return _finish(delivery, Delivery.Status.FAILED, "gateway refused", error=str(exc))
    if outcome is None:
        return _finish(delivery, Delivery.Status.IGNORED, "reference is not ours")
    return Delivery.Status.PROCESSED


def _backoff(retries: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, capped; a 429's Retry-After is the floor."""
    ceiling = get_exponential_backoff_interval(
        BACKOFF_FACTOR, retries, BACKOFF_MAX_SECONDS, full_jitter=False
    )
    return max(retry_after or 0.0, random.uniform(ceiling / 2, ceiling))


def _finish(delivery: Delivery, status: str, outcome: str, *, error: str = "") -> str:
    Delivery.objects.finish(delivery.pk, status=status, outcome=outcome, error=error)
    log = logger.warning if status == Delivery.Status.FAILED else logger.info
    log(
        "delivery %s",
        status,
        extra={
            "event_id": delivery.pk,
            "event": delivery.event,
            "reference": delivery.reference,
            "outcome": outcome,
            "error": error,
            "attempts": delivery.attempts,
        },
    )
    return status
