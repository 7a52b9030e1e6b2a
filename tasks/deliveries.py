"""Processing of stored webhook deliveries: claim, verify with the gateway, settle, record."""

import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction

from config.celery_app import PUBLISH_ERRORS
from paystack.errors import GatewayRejected, GatewayUnavailable
from tasks.handlers import HANDLERS
from tasks.retry import GatewayTask, VerdictPending
from webhooks.models import Delivery

logger = logging.getLogger(__name__)


def enqueue_deliveries(delivery_ids: list[int]) -> int:
    """Hand deliveries to the broker; those it will not take go back to `received` for the
    sweeper. Returns how many were sent. Call after commit, never inside a transaction."""
    for position, delivery_id in enumerate(delivery_ids):
        try:
            process_delivery.delay(delivery_id)
        except PUBLISH_ERRORS as exc:
            unsent = delivery_ids[position:]
            Delivery.objects.mark_unsent(unsent)
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
    """Set deliveries back to `queued` and enqueue them after commit (sweeper and replay).

    Call inside the transaction that holds their row locks. The returned list receives, once
    committed, how many the broker took (the rest wait as `received` for the sweeper).
    """
    Delivery.objects.queue_again(delivery_ids, lease_seconds=settings.STUCK_AFTER_SECONDS)
    sent: list[int] = []
    transaction.on_commit(lambda: sent.append(enqueue_deliveries(delivery_ids)))
    return sent


# The registered name stays tally.process_event so that messages already queued still resolve.
@shared_task(bind=True, base=GatewayTask, name="tally.process_event", reject_on_worker_lost=True)
def process_delivery(self: GatewayTask, delivery_id: int) -> str:
    """Process one stored delivery.

    1. Claim it with one conditional UPDATE (a lease); a claimed or finished one exits here.
    2. Look up what its event type does; a type we do not act on is `ignored`.
    3. Run the handler: it verifies with the gateway outside any lock, then settles and marks
       the delivery processed in one transaction.
    4. A gateway outage (or a verdict the gateway has not reached yet) gives the lease back
       and retries with backoff, until it gives up; a refusal fails the delivery at once.
    """
    delivery = Delivery.objects.claim(delivery_id, lease_seconds=settings.STUCK_AFTER_SECONDS)
    if delivery is None:
        # Another task holds the lease, or the delivery is finished: never call the gateway.
        logger.info(
            "delivery already claimed or finished",
            extra={"event_id": delivery_id, "outcome": "skipped"},
        )
        return "skipped"
    handler = HANDLERS.get(delivery.event)
    if handler is None:
        return _finish(delivery, Delivery.Status.IGNORED, f"{delivery.event} is not acted on")

    def record(outcome: str) -> None:
        _finish(delivery, Delivery.Status.PROCESSED, outcome)

    try:
        outcome = handler(delivery, record)
    except (GatewayUnavailable, VerdictPending) as exc:
        reason, error = exc, str(exc)
        return self.retry_or_give_up(
            exc,
            give_up=lambda: _give_up(delivery, reason, error),
            before_retry=lambda countdown: Delivery.objects.requeue(
                delivery_id,
                error=error,
                not_before_seconds=countdown + settings.STUCK_AFTER_SECONDS,
            ),
            context={
                "event_id": delivery_id,
                "event": delivery.event,
                "reference": delivery.reference,
            },
        )
    except GatewayRejected as exc:
        return _finish(delivery, Delivery.Status.FAILED, "gateway refused", error=str(exc))
    if outcome is None:
        return _finish(delivery, Delivery.Status.IGNORED, "reference is not ours")
    return Delivery.Status.PROCESSED


def _give_up(delivery: Delivery, error: GatewayUnavailable | VerdictPending, text: str) -> str:
    """Out of retries. An outage fails the delivery (replayable); a verdict still pending (a
    refund the gateway does not confirm yet) is left to reconciliation, which looks again."""
    if isinstance(error, VerdictPending):
        return _finish(
            delivery, Delivery.Status.PROCESSED, "unconfirmed; left to reconciliation", error=text
        )
    return _finish(delivery, Delivery.Status.FAILED, "gave up retrying", error=text)


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
