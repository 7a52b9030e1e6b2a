"""Verify a payment with the gateway (outside any lock), then apply the verdict through
ledger.services; and the callback's task that does just that."""

import logging
import time
from collections.abc import Callable

from celery import shared_task
from django.db import transaction

from config.metrics import gateway_verify_seconds, payments_settled, votes_credited, votes_reversed
from ledger import services
from ledger.models import Payment
from paystack.client import gateway
from paystack.errors import GatewayUnavailable, ReferenceNotFound
from paystack.types import Verification
from tasks.retry import GatewayTask

logger = logging.getLogger(__name__)

# Called with the outcome inside the transaction that applies it (a delivery marked processed
# commits with its credit, or not at all).
Recorder = Callable[[str], None]
Apply = Callable[..., services.Settlement]


def settle_verified(reference: str, *, record: Recorder | None = None) -> str | None:
    """Verify a reference and settle it. None if the reference is not ours."""
    return _verify_then_apply(
        reference, services.settle_payment, awaiting=services.AWAITING_SETTLEMENT, record=record
    )


def reverse_verified(reference: str, *, record: Recorder | None = None) -> str | None:
    """Verify a refunded reference and take its votes back once. None if it is not ours."""
    return _verify_then_apply(
        reference, services.reverse_payment, awaiting=services.AWAITING_REVERSAL, record=record
    )


def ask_gateway(reference: str) -> Verification:
    """The gateway's verify answer for a reference, timed for tally_gateway_verify_seconds."""
    started, outcome = time.perf_counter(), "error"
    try:
        verification = gateway().verify(reference)
        outcome = verification.status
        return verification
    except ReferenceNotFound:
        outcome = "not_found"
        raise
    except GatewayUnavailable:
        outcome = "unavailable"
        raise
    finally:
        gateway_verify_seconds.labels(outcome).observe(time.perf_counter() - started)


def count_outcome(outcome: services.Outcome, payment: Payment | None) -> str:
    """Count a settle attempt and the votes it moved; returns the outcome's name."""
    payments_settled.labels(outcome.value).inc()
    if payment is not None and outcome == services.Outcome.CREDITED:
        votes_credited.inc(payment.votes)
    elif payment is not None and outcome == services.Outcome.REVERSED:
        votes_reversed.inc(payment.votes)
    return outcome.value


def _verify_then_apply(
    reference: str,
    apply: Apply,
    *,
    awaiting: frozenset[str],
    record: Recorder | None,
) -> str | None:
    """Ask the gateway, then apply its answer; `record(outcome)` runs in the same transaction.

    A payment the verdict can no longer change is not verified again: a second delivery, the
    callback or a replay costs one SELECT, not a gateway call.
    """
    status = Payment.objects.filter(reference=reference).values_list("status", flat=True).first()
    if status is None:
        return None
    if status not in awaiting:
        outcome = count_outcome(services.Outcome.ALREADY_SETTLED, None)
        if record is not None:
            record(outcome)
        return outcome
    verification = ask_gateway(reference)
    with transaction.atomic():
        settlement = apply(reference=reference, verification=verification)
        if record is not None:
            record(settlement.outcome.value)
    return count_outcome(settlement.outcome, settlement.payment)


@shared_task(bind=True, base=GatewayTask, name="tally.verify_payment")
def verify_payment(self: GatewayTask, reference: str) -> str | None:
    """The callback's work: the same verify-and-settle as a charge.success delivery.

    Giving up leaves the payment pending: reconciliation verifies it later.
    """
    try:
        outcome = settle_verified(reference)
    except ReferenceNotFound:
        outcome = "not_found"  # not paid yet; reconciliation looks again later
    except GatewayUnavailable as exc:
        outcome = self.retry_or_give_up(
            exc, give_up=lambda: "gave_up", context={"reference": reference}
        )
    logger.info("payment verified", extra={"reference": reference, "outcome": outcome})
    return outcome
