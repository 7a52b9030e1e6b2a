"""Buying votes: write the pending payment, then open a checkout for it at the gateway.

The order is the point. The payment row is committed *before* Paystack hears of the
reference, so any webhook, callback or reconcile for that reference finds it ours: a
charge.success for a reference we have not stored would be ignored as "not ours" and the
payer's votes lost. The gateway call happens outside any transaction (no row lock is held
while we wait up to PAYSTACK_TIMEOUT), and when it fails the row is closed as `failed`
at once instead of lingering as `pending` until reconciliation expires it.
"""

import logging
from dataclasses import dataclass

from django.db.models.functions import Lower

from ledger import services
from ledger.models import Contestant, Payment
from paystack.client import gateway
from paystack.errors import GatewayError, GatewayRejected

logger = logging.getLogger(__name__)

# Unpaid checkouts one email may have open at once. A payer who abandons a checkout leaves it
# pending until PAYMENT_EXPIRES_AFTER_SECONDS; ten leaves room for retries, while a script
# cannot pile up pending payments (each a Paystack call) in one victim's name.
MAX_OPEN_PAYMENTS_PER_EMAIL = 10
# How long to tell the payer to wait: a checkout they complete is credited within moments.
OPEN_PAYMENTS_RETRY_AFTER_SECONDS = 60

# Primary keys are BIGINT: anything outside this range cannot be a contestant, and asking
# PostgreSQL about it would raise instead of finding nothing.
_MAX_ID = 2**63 - 1


class UnknownContestant(Exception):
    """No contestant has this id."""


class TooManyOpenPayments(Exception):
    """The email already has MAX_OPEN_PAYMENTS_PER_EMAIL pending payments; nothing written."""


class CheckoutUnavailable(Exception):
    """The gateway refused or could not open a checkout; the payment was marked failed."""

    def __init__(self, message: str, *, payment: Payment) -> None:
        super().__init__(message)
        self.payment = payment


@dataclass(frozen=True)
class Checkout:
    payment: Payment
    authorization_url: str


def start_checkout(*, contestant_id: int, votes: int, email: str, callback_url: str) -> Checkout:
    """A pending payment with a Paystack checkout URL for the payer.

    Raises UnknownContestant, TooManyOpenPayments, services.VotingClosed (nothing written in
    these cases) or CheckoutUnavailable (the payment written is `failed` with the gateway's
    reason).
    """
    contestant = _contestant(contestant_id)
    # Not under a lock: concurrent orders for one email may pass the cap by a few, which the
    # per-address rate limit bounds; holding a lock across the gateway call would be worse.
    if open_payments_of(email) >= MAX_OPEN_PAYMENTS_PER_EMAIL:
        raise TooManyOpenPayments(email)
    # Committed on return (autocommit): the reference exists before the gateway knows it.
    payment = services.create_payment(contestant=contestant, votes=votes, email=email)
    try:
        initialization = gateway().initialize(
            email=payment.email,
            amount=payment.amount,
            currency=payment.currency,
            reference=payment.reference,
            callback_url=callback_url,
            metadata={"payment": payment.id, "contestant": contestant.id, "votes": payment.votes},
        )
        if initialization.reference != payment.reference:
            # Webhooks and verify would carry a reference we never stored: the payer could
            # pay for votes we would never credit. Refuse before they see a checkout page.
            raise GatewayRejected(
                f"initialize answered reference {initialization.reference!r}, "
                f"not ours {payment.reference!r}"
            )
    except GatewayError as exc:
        raise _fail(payment, exc) from exc
    logger.info(
        "checkout started",
        extra={"reference": payment.reference, "amount": payment.amount, "votes": payment.votes},
    )
    return Checkout(payment=payment, authorization_url=initialization.authorization_url)


def open_payments_of(email: str) -> int:
    """Pending payments for this email, in any letter case (the partial index serves it)."""
    return (
        Payment.objects.filter(status=Payment.Status.PENDING)
        .annotate(email_lower=Lower("email"))
        .filter(email_lower=email.lower())
        .count()
    )


def _contestant(contestant_id: int) -> Contestant:
    if not 1 <= contestant_id <= _MAX_ID:
        raise UnknownContestant(contestant_id)
    contestant = Contestant.objects.select_related("contest").filter(pk=contestant_id).first()
    if contestant is None:
        raise UnknownContestant(contestant_id)
    return contestant


def _fail(payment: Payment, error: GatewayError) -> CheckoutUnavailable:
    """Close the payment the payer can no longer pay (no checkout URL), keeping the reason.

    Even when a timed-out initialize did reach Paystack, nobody has the authorization URL,
    so no charge can follow; `failed` is final and true.
    """
    reason = f"initialize failed: {error}"
    settlement = services.expire_payment(reference=payment.reference, reason=reason)
    level = logging.ERROR if isinstance(error, GatewayRejected) else logging.WARNING
    # A refusal (401 Invalid key, currency not enabled) is a configuration problem for a
    # person; an outage is expected now and then.
    logger.log(level, "checkout failed", extra={"reference": payment.reference, "error": reason})
    return CheckoutUnavailable(reason, payment=settlement.payment)
