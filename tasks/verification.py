"""Ask the gateway about a payment (outside any lock), then apply its verdict through
ledger.services; and the callback's task that does just that."""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from celery import shared_task
from django.conf import settings
from django.db import transaction

from config.metrics import gateway_verify_seconds, payments_settled, votes_credited, votes_reversed
from ledger import services
from ledger.models import Payment
from paystack.client import gateway
from paystack.errors import GatewayUnavailable, RateLimited, ReferenceNotFound
from paystack.types import Verification
from tasks.retry import GatewayTask, VerdictPending

logger = logging.getLogger(__name__)


class VerifiedMomentsAgo(Exception):
    """Another path asked the gateway about this payment less than VERIFY_COOLDOWN_SECONDS
    ago: do not ask again; its answer settles the payment, or look again after the cooldown."""

    def __init__(self, reference: str, seconds_left: float) -> None:
        super().__init__(f"{reference} was verified moments ago")
        self.seconds_left = seconds_left


@contextmanager
def verify_claim(reference: str) -> Iterator[None]:
    """Hold the payment's verify claim for the calls in the block (ledger.services.
    claim_verify); raises VerifiedMomentsAgo when another path holds it. A call that fails
    with an outage gives the claim back: a retry after a gateway error may ask again."""
    claim = services.claim_verify(reference=reference)
    if not claim.won:
        raise VerifiedMomentsAgo(reference, claim.seconds_left)
    try:
        yield
    except GatewayUnavailable:
        services.release_verify(reference=reference, claim=claim)
        raise


# Called with the outcome inside the transaction that applies it (a delivery marked processed
# commits with its credit, or not at all).
Recorder = Callable[[str], None]
Apply = Callable[[Verification], services.Settlement]


def status_of(reference: str) -> str | None:
    """The payment's status now, or None when the reference is not ours (one SELECT)."""
    return Payment.objects.filter(reference=reference).values_list("status", flat=True).first()


def settle_verified(reference: str, *, record: Recorder | None = None) -> str | None:
    """Verify a reference and settle the charge. None if the reference is not ours.

    A payment the verdict can no longer change is not verified again: a second delivery, the
    callback or a replay costs one SELECT, not a gateway call.
    """
    status = status_of(reference)
    if status is None:
        return None
    if status not in services.AWAITING_SETTLEMENT:
        return _already_settled(record)
    with verify_claim(reference):
        verification = ask_gateway(reference)
    return settle_answer(reference, verification, record=record)


def settle_answer(reference: str, verification: Verification, *, record: Recorder | None) -> str:
    """Settle the charge on the gateway's answer (asked already, outside any lock), record
    the outcome with it, and count it."""
    return _apply(
        lambda v: services.settle_payment(reference=reference, verification=v),
        verification,
        record=record,
    )


def confirm_reversal(
    reference: str, *, reason: str, record: Recorder | None = None, must_confirm: bool = True
) -> str | None:
    """Verify that the gateway reversed a charge and take the votes back once.

    Confirmed: verify says `reversed`, or (a partial refund, or verify lagging) the gateway's
    own refund record of the transaction says `processed`. Unconfirmed with `must_confirm`
    raises VerdictPending (retry later); otherwise it counts `still_pending`. None if the
    reference is not ours.
    """
    status = status_of(reference)
    if status is None:
        return None
    if status not in services.AWAITING_REVERSAL:
        return _already_settled(record)
    with verify_claim(reference):
        verification = ask_gateway(reference)
        refund_processed = verification.status != "reversed" and _refund_processed(verification)
    confirmed = verification.status == "reversed" or refund_processed
    if not confirmed and must_confirm:
        count_outcome(services.Outcome.STILL_PENDING, None)
        # Not before the cooldown: asking sooner would only be refused.
        raise VerdictPending(
            f"the gateway does not confirm the reversal of {reference} yet",
            retry_after=settings.VERIFY_COOLDOWN_SECONDS,
        )
    return _apply(
        lambda v: services.reverse_payment(
            reference=reference, verification=v, refund_confirmed=refund_processed, reason=reason
        ),
        verification,
        record=record,
    )


def resolve_dispute_verified(
    reference: str, *, dispute_id: str, resolution: str, record: Recorder
) -> str | None:
    """Verify a payment whose chargeback was resolved, then close the dispute on the verdict."""
    if status_of(reference) is None:
        return None
    with verify_claim(reference):
        verification = ask_gateway(reference)
    return _apply(
        lambda v: services.resolve_dispute(
            reference=reference, dispute_id=dispute_id, resolution=resolution, verification=v
        ),
        verification,
        record=record,
    )


def _refund_processed(verification: Verification) -> bool:
    """True when the gateway's refund record of the transaction says a refund went through."""
    if verification.gateway_id is None:
        return False
    # PaystackClient has no list_refunds yet: it lands with the sandbox work. Until then this
    # line fails at run time; drop the ignore once the method exists.
    refunds = gateway().list_refunds(transaction_id=verification.gateway_id)
    return any(refund.status == "processed" for refund in refunds)


def _apply(apply: Apply, verification: Verification, *, record: Recorder | None) -> str:
    with transaction.atomic():
        settlement = apply(verification)
        if record is not None:
            record(settlement.outcome.value)
    return count_outcome(settlement.outcome, settlement.payment)


def _already_settled(record: Recorder | None) -> str:
    outcome = count_outcome(services.Outcome.ALREADY_SETTLED, None)
    if record is not None:
        record(outcome)
    return outcome


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


@shared_task(bind=True, base=GatewayTask, name="tally.verify_payment")
def verify_payment(self: GatewayTask, reference: str) -> str | None:
    """The callback's work: the same verify-and-settle as a charge.success delivery, when no
    other path verified the payment moments ago (then that answer stands, and the webhook or
    reconciliation settles it).

    A 429 is not retried: the payer's return is only a hint, and a rate-limited gateway must
    not see a storm of retries from anyone able to reload a page. Another outage is retried;
    giving up leaves the payment open for reconciliation.
    """
    try:
        outcome = settle_verified(reference)
    except VerifiedMomentsAgo:
        outcome = "verified_moments_ago"
    except ReferenceNotFound:
        outcome = "not_found"  # not paid yet; reconciliation looks again later
    except RateLimited:
        outcome = "rate_limited"
    except GatewayUnavailable as exc:
        outcome = self.retry_or_give_up(
            exc, give_up=lambda: "gave_up", context={"reference": reference}
        )
    logger.info("payment verified", extra={"reference": reference, "outcome": outcome})
    return outcome
