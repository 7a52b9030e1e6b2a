"""Processing of stored webhook deliveries: claim, verify with the gateway, settle, record."""

import logging
from collections import Counter
from collections.abc import Callable, Mapping

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery_batches import SimpleRequest
from django.conf import settings
from django.db import transaction

from config.celery_app import PUBLISH_ERRORS, drop_broken_database_connections
from config.metrics import delivery_messages_sent
from config.tracing import link_to_senders
from ledger import services
from paystack.errors import GatewayRejected, GatewayUnavailable
from paystack.types import Verification
from tasks.batches import (
    MessageBatches,
    messages_of,
    settles_together,
    sort_by_payment,
    verify_all,
)
from tasks.handlers import HANDLERS
from tasks.retry import GatewayTask, VerdictPending
from tasks.verification import VerifiedMomentsAgo, count_outcome, settle_answer
from webhooks.models import Delivery, Message

logger = logging.getLogger(__name__)

# How a claimed delivery is retried after an outage: the outcome, or the task's Retry raised.
Retry = Callable[[GatewayUnavailable | VerdictPending], str]


def enqueue_deliveries(messages: list[Message], *, by: str) -> int:
    """Hand messages to the broker; deliveries whose message it will not take go back to
    `received` for the sweeper. Returns how many were sent. Call after commit, never inside a
    transaction. `by` says who sends (webhook, sweeper, replay) for the messages counter."""
    for position, message in enumerate(messages):
        try:
            process_deliveries.delay(*message)
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
    """Process one stored delivery: a retry's or a cooldown's message (due later), or one
    sent before batches existed. New deliveries go to process_deliveries.

    1. Claim it with one conditional UPDATE (a lease): only the delivery's current message,
       once its not-before time has passed, or a takeover of an expired lease. Anything else
       exits here, without a gateway call. The claim past MAX_DELIVERY_ATTEMPTS fails it.
    2. Process it (`_process`); a gateway outage retries this task with backoff.
    """
    delivery = Delivery.objects.claim(
        delivery_id,
        generation,
        lease_seconds=settings.STUCK_AFTER_SECONDS,
        max_attempts=settings.MAX_DELIVERY_ATTEMPTS,
    )
    if delivery is None:
        _log_skipped(delivery_id, generation)
        return "skipped"
    held = _held(delivery)

    def retry(error: GatewayUnavailable | VerdictPending) -> str:
        return (
            self.retry_or_give_up(
                error,
                give_up=_give_up(delivery, error),
                retry_args=_retry_message(held, str(error)),
                context=_context(delivery),
            )
            or "lease_lost"
        )

    return _process(delivery, retries=self.request.retries, retry=retry)


@shared_task(
    bind=True,
    base=MessageBatches,
    name="tally.process_deliveries",
    flush_every=settings.SETTLE_BATCH_SIZE,
    flush_interval=settings.SETTLE_BATCH_WAIT_MS / 1000,
)
def process_deliveries(self: MessageBatches, requests: list[SimpleRequest]) -> dict[str, int]:
    """Process the deliveries of up to SETTLE_BATCH_SIZE messages in one task run: what
    enqueue_deliveries sends (docs/delivery-engine.md#batched-settlement). Its worker buffers
    messages until SETTLE_BATCH_SIZE have come or SETTLE_BATCH_WAIT_MS has passed, and
    acknowledges them once this run has ended.

    1. Claim every message's delivery in one statement, by the rules of process_delivery's
       claim; the others exit here, without a gateway call.
    2. Settle the charge.success deliveries together (`_settle_batch`).
    3. Process any other event one by one (`_process`).
    An outage for one delivery retries only that one, as a process_delivery message of its
    own, due after the backoff. Returns how many messages ended how.
    """
    link_to_senders(request.request_dict or {} for request in requests)
    messages = messages_of(requests)
    claimed = Delivery.objects.claim_all(
        messages,
        lease_seconds=settings.STUCK_AFTER_SECONDS,
        max_attempts=settings.MAX_DELIVERY_ATTEMPTS,
    )
    taken = {delivery.pk for delivery in claimed}
    for delivery_id, generation in messages:
        if delivery_id not in taken:
            _log_skipped(delivery_id, generation)
    together = [delivery for delivery in claimed if settles_together(delivery)]
    results = list(_settle_batch(together).values())
    results += [
        _process(delivery, retries=_retries_of(delivery), retry=_send_retry(delivery))
        for delivery in claimed
        if delivery not in together
    ]
    return {"skipped": len(messages) - len(claimed), **Counter(results)}


def _log_skipped(delivery_id: int, generation: int | None) -> None:
    # Not this message's turn: a duplicate, a late or re-sent one, a retry not due yet, a
    # live lease, or a finished delivery. Never call the gateway.
    logger.info(
        "delivery not claimed",
        extra={"event_id": delivery_id, "generation": generation, "outcome": "skipped"},
    )


def _process(delivery: Delivery, *, retries: int, retry: Retry) -> str:
    """Process one claimed delivery.

    1. A claim past the attempt cap has already failed it.
    2. Look up what its event type does; a type we do not act on is `ignored`.
    3. Run the handler: it verifies with the gateway outside any lock (at most once per
       payment per VERIFY_COOLDOWN_SECONDS, whoever asks), then settles and marks the
       delivery processed in one transaction.
    4. The payment was verified moments ago by another path: a new message after the
       cooldown looks again (by then it is usually settled: no call at all).
    5. A gateway outage (or a verdict the gateway has not reached yet) gives the lease back
       and `retry`s with backoff, until it gives up; a refusal fails the delivery at once;
       any other error fails it with the error, for a person to replay.
    """
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
    except Exception as exc:
        return _unsettled(delivery, exc, retries=retries, retry=retry)
    if outcome is None:
        return _finish(delivery, Delivery.Status.IGNORED, "reference is not ours")
    return Delivery.Status.PROCESSED


def _unsettled(delivery: Delivery, error: Exception, *, retries: int, retry: Retry) -> str:
    """What becomes of a claimed delivery whose handler raised `error` (process_delivery's
    step 4 and 5): look again after the cooldown, `retry` (an outage, a verdict not reached),
    fail it on a refusal, or fail it with any other error."""
    if isinstance(error, VerifiedMomentsAgo):
        return _look_again_later(delivery, _held(delivery), error.seconds_left, retries)
    if isinstance(error, GatewayUnavailable | VerdictPending):
        return retry(error)
    if isinstance(error, GatewayRejected):
        return _finish(delivery, Delivery.Status.FAILED, "gateway refused", error=str(error))
    # A bug, a row the database refuses, a soft time limit (a row lock held for too long):
    # retrying would repeat it. Fail the delivery with the error (a replay retries it once
    # fixed) instead of leaving it to loop. A query the limit cut off leaves the connection
    # unusable: drop it, so the record below (and the next task) gets a new one.
    logger.error(
        "delivery failed with an unexpected error", extra=_context(delivery), exc_info=error
    )
    drop_broken_database_connections()
    return _finish(
        delivery,
        Delivery.Status.FAILED,
        "unexpected error",
        error=f"{type(error).__name__}: {error}",
    )


def _settle_batch(batch: list[Delivery]) -> dict[Delivery, str]:
    """Settle claimed charge.success deliveries together; what became of each.

    1. One statement reads every payment's status and takes the verify claims: not ours →
       ignored; settled → processed, already settled (both finished in one UPDATE);
       verified moments ago → looked at again after the cooldown.
    2. Verify the rest concurrently, outside any lock.
    3. Settle the answered ones in one transaction that also finishes their deliveries
       (those whose lease this worker still holds); an unexpected error there settles them
       one by one instead, so a poison row fails only itself.
    4. The others go the single path's way: an outage for that reference is retried with
       backoff under a new generation, a refusal or an error fails the delivery.
    """
    if not batch:
        return {}
    try:
        found = sort_by_payment(batch)
    except Exception as exc:  # a row lock held past the soft time limit, a database error
        return {delivery: _unsettled_in_batch(delivery, exc) for delivery in batch}
    errors: dict[Delivery, Exception] = {
        delivery: VerifiedMomentsAgo(delivery.reference, seconds_left)
        for delivery, seconds_left in found.moments_ago
    }
    already_settled = services.Outcome.ALREADY_SETTLED
    results = _finish_unverified(
        {
            delivery: (Delivery.Status.IGNORED, "reference is not ours")
            for delivery in found.not_ours
        }
        | {delivery: (Delivery.Status.PROCESSED, already_settled) for delivery in found.settled}
    )
    for _ in found.settled:
        count_outcome(already_settled, None)
    answered: dict[Delivery, Verification] = {}
    for reference, answer in verify_all(list(found.to_verify)).items():
        delivery, claim = found.to_verify[reference]
        if isinstance(answer, Verification):
            answered[delivery] = answer
            continue
        if isinstance(answer, GatewayUnavailable):
            services.release_verify(reference=reference, claim=claim)  # may ask again at once
        errors[delivery] = answer
    results |= _settle_answered(answered, errors)
    for delivery, error in errors.items():
        results[delivery] = _unsettled_in_batch(delivery, error)
    return results


def _settle_answered(
    answered: dict[Delivery, Verification], errors: dict[Delivery, Exception]
) -> dict[Delivery, str]:
    """Step 3: settle the answered payments and finish their deliveries in one transaction.
    On an unexpected error, each through the single path; the errors of that go to
    `errors`."""
    if not answered:
        return {}
    by_reference = {delivery.reference: delivery for delivery in answered}
    finished: set[Message] = set()

    def record(settlements: dict[str, services.Settlement]) -> None:
        outcomes = {
            _held(by_reference[reference]): (Delivery.Status.PROCESSED, settled.outcome.value)
            for reference, settled in settlements.items()
        }
        finished.update(Delivery.objects.finish_together(outcomes))

    try:
        with transaction.atomic():
            settlements = services.settle_payments(
                verifications={delivery.reference: answer for delivery, answer in answered.items()},
                record=record,
            )
            if len(settlements) != len(answered):
                raise LookupError("a payment of the batch vanished while it was verified")
    except SoftTimeLimitExceeded as exc:
        # A row lock held too long: no time is left to settle them one by one. Each fails
        # with the error, as it would have alone (a replay settles it once the lock is gone).
        errors.update(dict.fromkeys(answered, exc))
        return {}
    except Exception:
        logger.exception(
            "batch settlement failed; settling its deliveries one by one",
            extra={"event_ids": [delivery.pk for delivery in answered], "batch": len(answered)},
        )
        drop_broken_database_connections()
        return {
            delivery: result
            for delivery, answer in answered.items()
            if (result := _settle_alone(delivery, answer, errors)) is not None
        }
    results: dict[Delivery, str] = {}
    for reference, settlement in settlements.items():
        delivery = by_reference[reference]
        outcome = count_outcome(settlement.outcome, settlement.payment)
        results[delivery] = _log_finished(
            delivery, Delivery.Status.PROCESSED, outcome, held=_held(delivery) in finished
        )
    return results


def _settle_alone(
    delivery: Delivery, answer: Verification, errors: dict[Delivery, Exception]
) -> str | None:
    """One delivery of a batch whose transaction failed, through the single path."""

    def record(outcome: str) -> None:
        _finish(delivery, Delivery.Status.PROCESSED, outcome)

    try:
        settle_answer(delivery.reference, answer, record=record)
    except Exception as exc:
        errors[delivery] = exc
        return None
    return Delivery.Status.PROCESSED


def _finish_unverified(outcomes: Mapping[Delivery, tuple[str, str]]) -> dict[Delivery, str]:
    """Finish the deliveries that need no gateway answer in one UPDATE, and log each."""
    finished = Delivery.objects.finish_together(
        {_held(delivery): status_and_outcome for delivery, status_and_outcome in outcomes.items()}
    )
    return {
        delivery: _log_finished(delivery, status, outcome, held=_held(delivery) in finished)
        for delivery, (status, outcome) in outcomes.items()
    }


def _unsettled_in_batch(delivery: Delivery, error: Exception) -> str:
    """`_unsettled` for a delivery of a batch, retried as a message of its own."""
    return _unsettled(delivery, error, retries=_retries_of(delivery), retry=_send_retry(delivery))


def _send_retry(delivery: Delivery) -> Retry:
    """How a delivery of a batch is retried: a process_delivery message of its own, due
    after the backoff, under a new generation; or, out of retries, given up."""

    def retry(error: GatewayUnavailable | VerdictPending) -> str:
        return (
            process_delivery.send_retry_or_give_up(
                error,
                retries=_retries_of(delivery),
                give_up=_give_up(delivery, error),
                retry_args=_retry_message(_held(delivery), str(error)),
                context=_context(delivery),
            )
            or "lease_lost"
        )

    return retry


def _retries_of(delivery: Delivery) -> int:
    """How many retries a delivery of a batch has had: its claims since its last replay,
    this one aside (a batch's messages carry no retry count)."""
    return max(delivery.attempts - delivery.attempts_before_replay - 1, 0)


def _held(delivery: Delivery) -> Message:
    return Message(delivery.pk, delivery.generation)


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
    held = Delivery.objects.finish(_held(delivery), status=status, outcome=outcome, error=error)
    return _log_finished(delivery, status, outcome, held=held, error=error)


def _log_finished(
    delivery: Delivery, status: str, outcome: str | None, *, held: bool, error: str = ""
) -> str:
    if not held:
        # Another worker took the expired lease over; it records the outcome instead.
        logger.warning("delivery lease lost", extra={**_context(delivery), "outcome": outcome})
        return "lease_lost"
    log = logger.warning if status == Delivery.Status.FAILED else logger.info
    log("delivery %s", status, extra={**_context(delivery), "outcome": outcome, "error": error})
    return status
