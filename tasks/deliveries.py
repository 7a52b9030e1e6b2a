"""Processing of stored webhook deliveries: claim, verify with the gateway, settle, record."""

import logging
from collections.abc import Callable

from celery import shared_task
from django.conf import settings
from django.db import transaction

from config.celery_app import PUBLISH_ERRORS, drop_broken_database_connections
from config.metrics import delivery_messages_sent
from paystack.errors import GatewayRejected, GatewayUnavailable
from tasks.handlers import HANDLERS
from tasks.retry import GatewayTask, VerdictPending
from tasks.verification import VerifiedMomentsAgo
from webhooks.models import Delivery, Message

logger = logging.getLogger(__name__)


def enqueue_deliveries(messages: list[Message], *, by: str) -> int:
    """Hand messages to the broker; deliveries whose message it will not take go back to
    `received` for the sweeper. Returns how many were sent. Call after commit, never inside a
    transaction. `by` says who sends (webhook, sweeper, replay) for the messages counter."""
    for position, message in enumerate(messages):
        try:
            process_delivery.delay(*message)
        except PUBLISH_ERRORS as exc:
            unsent = messages[position:]
            Delivery.objects.mark_unsent(unsent)
            logger.error(
                "broker unavailable; delivery stored and left for the sweeper",
                extra={
                    "event_id": message.delivery_id,
                    "outcome": "left_for_sweeper",
                    "unsent": len(unsent),
                    "error": repr(exc),
                },
            )
            delivery_messages_sent.labels(by).inc(position)
            return position
    delivery_messages_sent.labels(by).inc(len(messages))
    return len(messages)


def queue_again(delivery_ids: list[int], *, by: str) -> list[int]:
    """Set deliveries back to `queued` under a new generation and enqueue them after commit
    (sweeper and replay): a message of theirs still in the broker becomes a no-op.

    Call inside the transaction that holds their row locks. The returned list receives, once
    committed, how many the broker took (the rest wait as `received` for the sweeper).
    """
    messages = Delivery.objects.queue_again(
        delivery_ids, lease_seconds=settings.STUCK_AFTER_SECONDS
    )
    sent: list[int] = []
    transaction.on_commit(lambda: sent.append(enqueue_deliveries(messages, by=by)))
    return sent


# The registered name stays tally.process_event so that messages already queued still resolve;
# those carry no generation and claim whatever generation the delivery has.
@shared_task(
    bind=True,
    base=GatewayTask,
    name="tally.process_event",
    reject_on_worker_lost=True,
    soft_time_limit=settings.TASK_SOFT_TIME_LIMIT,
    time_limit=settings.TASK_TIME_LIMIT,
)
def process_delivery(self: GatewayTask, delivery_id: int, generation: int | None = None) -> str:
    """Process one stored delivery.

    1. Claim it with one conditional UPDATE (a lease): only the delivery's current message,
       once its not-before time has passed, or a takeover of an expired lease. Anything else
       exits here, without a gateway call. The claim past MAX_DELIVERY_ATTEMPTS fails it.
    2. Look up what its event type does; a type we do not act on is `ignored`.
    3. Run the handler: it verifies with the gateway outside any lock (at most once per
       payment per VERIFY_COOLDOWN_SECONDS, whoever asks), then settles and marks the
       delivery processed in one transaction.
    4. The payment was verified moments ago by another path: a new message after the
       cooldown looks again (by then it is usually settled: no call at all).
    5. A gateway outage (or a verdict the gateway has not reached yet) gives the lease back
       and retries with backoff, until it gives up; a refusal fails the delivery at once; any
       other error fails it with the error, for a person to replay.
    """
    delivery = Delivery.objects.claim(
        delivery_id,
        generation,
        lease_seconds=settings.STUCK_AFTER_SECONDS,
        max_attempts=settings.MAX_DELIVERY_ATTEMPTS,
    )
    if delivery is None:
        # Not this message's turn: a duplicate, a late or re-sent one, a retry not due yet, a
        # live lease, or a finished delivery. Never call the gateway.
        logger.info(
            "delivery not claimed",
            extra={"event_id": delivery_id, "generation": generation, "outcome": "skipped"},
        )
        return "skipped"
    held = Message(delivery.pk, delivery.generation)
    if delivery.status == Delivery.Status.FAILED:
        logger.warning(
            "delivery failed: too many attempts",
            extra={**_context(delivery), "outcome": "gave_up", "error": delivery.last_error},
        )
        return Delivery.Status.FAILED
    handler = HANDLERS.get(delivery.event)
    if handler is None:
        return _finish(delivery, Delivery.Status.IGNORED, f"{delivery.event} is not acted on")

    def record(outcome: str) -> None:
        _finish(delivery, Delivery.Status.PROCESSED, outcome)

    try:
        outcome = handler(delivery, record)
    except VerifiedMomentsAgo as exc:
        return _look_again_later(delivery, held, exc.seconds_left, self.request.retries)
    except (GatewayUnavailable, VerdictPending) as exc:
        given_up = self.retry_or_give_up(
            exc,
            give_up=_give_up(delivery, exc),
            retry_args=_retry_message(held, str(exc)),
            context=_context(delivery),
        )
        return given_up or "lease_lost"
    except GatewayRejected as exc:
        return _finish(delivery, Delivery.Status.FAILED, "gateway refused", error=str(exc))
    except Exception as exc:
        # A bug, a row the database refuses, a soft time limit (a row lock held for too long):
        # retrying would repeat it. Fail the delivery with the error (a replay retries it once
        # fixed) instead of leaving it to loop. A query the limit cut off leaves the
        # connection unusable: drop it, so the record below (and the next task) gets a new one.
        logger.exception("delivery failed with an unexpected error", extra=_context(delivery))
        drop_broken_database_connections()
        return _finish(
            delivery,
            Delivery.Status.FAILED,
            "unexpected error",
            error=f"{type(exc).__name__}: {exc}",
        )
    if outcome is None:
        return _finish(delivery, Delivery.Status.IGNORED, "reference is not ours")
    return Delivery.Status.PROCESSED


def _retry_message(held: Message, error: str) -> Callable[[float], Message | None]:
    """Before a retry: give the lease back under a new generation, due after the backoff. The
    retry's message carries that generation, so no other message can claim it meanwhile."""

    def requeue(countdown: float) -> Message | None:
        message = Delivery.objects.requeue(
            held,
            delay_seconds=countdown,
            lease_seconds=settings.STUCK_AFTER_SECONDS,
            error=error,
        )
        if message is not None:
            delivery_messages_sent.labels("retry").inc()
        return message

    return requeue


def _look_again_later(delivery: Delivery, held: Message, seconds: float, retries: int) -> str:
    """Another path verified this payment moments ago: instead of a second gateway call, a
    new message looks again once the cooldown is over (usually finding it settled)."""
    message = Delivery.objects.requeue(
        held, delay_seconds=seconds, lease_seconds=settings.STUCK_AFTER_SECONDS, error=None
    )
    if message is not None:
        try:
            # The same retry count: a cooldown is not a retry, and must not reset one either.
            # (`retries` is an option of send_task that celery-types does not list.)
            process_delivery.apply_async(  # type: ignore[call-arg]
                message, countdown=seconds, retries=retries
            )
            delivery_messages_sent.labels("cooldown").inc()
        except PUBLISH_ERRORS:
            pass  # the sweeper sends it once overdue (its stale_after follows the cooldown)
    logger.info(
        "payment verified moments ago; looking again later",
        extra={**_context(delivery), "outcome": "cooldown", "countdown": round(seconds, 1)},
    )
    return "cooldown"


def _give_up(delivery: Delivery, error: GatewayUnavailable | VerdictPending) -> Callable[[], str]:
    """Out of retries. An outage fails the delivery (replayable); a verdict still pending (a
    refund the gateway does not confirm yet) is left to reconciliation, which looks again."""
    text = str(error)
    if isinstance(error, VerdictPending):
        return lambda: _finish(
            delivery, Delivery.Status.PROCESSED, "unconfirmed; left to reconciliation", error=text
        )
    return lambda: _finish(delivery, Delivery.Status.FAILED, "gave up retrying", error=text)


def _context(delivery: Delivery) -> dict[str, object]:
    return {
        "event_id": delivery.pk,
        "event": delivery.event,
        "reference": delivery.reference,
        "generation": delivery.generation,
        "attempts": delivery.attempts,
    }


def _finish(delivery: Delivery, status: str, outcome: str, *, error: str = "") -> str:
    held = Message(delivery.pk, delivery.generation)
    if not Delivery.objects.finish(held, status=status, outcome=outcome, error=error):
        # Another worker took the expired lease over; it records the outcome instead.
        logger.warning("delivery lease lost", extra={**_context(delivery), "outcome": outcome})
        return "lease_lost"
    log = logger.warning if status == Delivery.Status.FAILED else logger.info
    log("delivery %s", status, extra={**_context(delivery), "outcome": outcome, "error": error})
    return status
