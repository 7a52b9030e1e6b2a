"""Every write that moves money or votes. Callers ask the gateway first and pass its answer in."""

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ledger.models import Contestant, LedgerEntry, Payment, PaymentTransition, VoteShard
from paystack.types import Verification

logger = logging.getLogger(__name__)

REFERENCE_PREFIX = "tly-"


class VotingClosed(Exception):
    """The contest is not open for votes now."""


class Outcome(StrEnum):
    CREDITED = "credited"
    ALREADY_SETTLED = "already_settled"
    FLAGGED = "flagged"
    FAILED = "failed"
    REVERSED = "reversed"
    STILL_PENDING = "still_pending"  # the gateway has no final answer yet; nothing changed


@dataclass(frozen=True)
class Settlement:
    outcome: Outcome
    payment: Payment


# Which payments a gateway verdict can still change. Callers check these before asking the
# gateway (a settled payment costs one SELECT, not a call); the services check them again
# under the row lock, which is what makes it exactly once.
AWAITING_SETTLEMENT = frozenset({Payment.Status.PENDING})
AWAITING_REVERSAL = frozenset({Payment.Status.PENDING, Payment.Status.CREDITED})


def new_reference() -> str:
    """A reference in Paystack's alphabet (letters, digits, '-'), unique with 80 random bits."""
    return REFERENCE_PREFIX + secrets.token_hex(10)


def create_payment(*, contestant: Contestant, votes: int, email: str) -> Payment:
    """A pending payment for `votes` votes at the contest's price; refuses a closed contest."""
    contest = contestant.contest
    now = timezone.now()
    if not contest.opens_at <= now < contest.closes_at:
        raise VotingClosed(f"voting in {contest.name} is closed")
    return Payment.objects.create(
        reference=new_reference(),
        contestant=contestant,
        votes=votes,
        amount=votes * contest.price_per_vote,
        currency=contest.currency,
        email=email,
    )


def settle_payment(*, reference: str, verification: Verification) -> Settlement:
    """Apply the gateway's verdict to a pending payment once; a settled payment is left as is."""
    # savepoint=False: inside a caller's transaction (a task recording its delivery with the
    # credit) all of it commits or rolls back together, without a savepoint's extra round trips.
    with transaction.atomic(savepoint=False):
        # The row lock serialises every delivery, callback, replay and reconcile of this
        # reference: whoever comes second sees the status the first one committed.
        payment = Payment.objects.select_for_update().get(reference=reference)
        if payment.status not in AWAITING_SETTLEMENT:
            return Settlement(Outcome.ALREADY_SETTLED, payment)
        payment.verified_at = timezone.now()
        if verification.status == "success":
            return _credit_or_flag(payment, verification)
        if verification.status == "failed":
            return _finish(payment, Payment.Status.FAILED, "the gateway says the charge failed")
        if verification.status == "reversed":
            return _finish(payment, Payment.Status.REVERSED, "reversed before it was credited")
        if verification.status == "abandoned" and is_expired(payment):
            return _finish(payment, Payment.Status.FAILED, "abandoned and expired")
        return Settlement(Outcome.STILL_PENDING, payment)


def reverse_payment(*, reference: str, verification: Verification) -> Settlement:
    """Take a refunded payment's votes back once; a pending one is closed with no votes."""
    with transaction.atomic(savepoint=False):
        payment = Payment.objects.select_for_update().get(reference=reference)
        if verification.status != "reversed":
            # The gateway is the truth: a refund event it does not confirm changes nothing.
            return Settlement(Outcome.STILL_PENDING, payment)
        if payment.status not in AWAITING_REVERSAL:
            return Settlement(Outcome.ALREADY_SETTLED, payment)
        if payment.status == Payment.Status.PENDING:
            # The refund arrived first: closing the payment now stops any later credit.
            return _finish(payment, Payment.Status.REVERSED, "refunded before it was credited")
        LedgerEntry.objects.create(
            payment=payment,
            contestant_id=payment.contestant_id,
            kind=LedgerEntry.Kind.REVERSAL,
            votes=-payment.votes,
        )
        _move_votes(payment, -payment.votes)
        return _finish(payment, Payment.Status.REVERSED, "refunded")


def expire_payment(*, reference: str, reason: str) -> Settlement:
    """Close a payment the gateway never saw paid (never initialised, or long abandoned)."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(reference=reference)
        if payment.status != Payment.Status.PENDING:
            return Settlement(Outcome.ALREADY_SETTLED, payment)
        return _finish(payment, Payment.Status.FAILED, reason)


def claim_for_reconcile(*, reference: str, now: datetime) -> bool:
    """Stamp `verified_at` on a pending payment nobody verified recently; True if we won.

    One conditional UPDATE: two reconcile runs at once (two beat replicas, or the command
    beside beat) never verify the same payment twice in one round.
    """
    return bool(
        Payment.objects.filter(
            Q(verified_at__isnull=True) | Q(verified_at__lt=recently_verified_since(now)),
            reference=reference,
            status=Payment.Status.PENDING,
        ).update(verified_at=now)
    )


def recently_verified_since(now: datetime) -> datetime:
    """A pending payment verified after this is skipped by reconciliation: another run (a
    second beat, or the command beside beat) asked the gateway about it moments ago."""
    return now - timedelta(seconds=min(settings.RECONCILE_AFTER_SECONDS, 60))


def is_expired(payment: Payment) -> bool:
    """True once a payment has had PAYMENT_EXPIRES_AFTER_SECONDS to be paid."""
    age_limit = timedelta(seconds=settings.PAYMENT_EXPIRES_AFTER_SECONDS)
    return payment.created_at <= timezone.now() - age_limit


def _credit_or_flag(payment: Payment, verification: Verification) -> Settlement:
    payment.gateway_id = verification.gateway_id
    payment.paid_at = verification.paid_at
    mismatches = [
        f"{field}: ours {ours!r}, gateway {theirs!r}"
        for field, ours, theirs in (
            ("reference", payment.reference, verification.reference),
            ("amount", payment.amount, verification.amount),
            ("currency", payment.currency, verification.currency),
        )
        if ours != theirs
    ]
    if mismatches:
        return _finish(payment, Payment.Status.FLAGGED, "; ".join(mismatches))
    LedgerEntry.objects.create(
        payment=payment,
        contestant_id=payment.contestant_id,
        kind=LedgerEntry.Kind.CREDIT,
        votes=payment.votes,
    )
    payment.credited_at = payment.verified_at
    settlement = _finish(payment, Payment.Status.CREDITED, "")
    # Last statement before COMMIT: the shard row stays locked as briefly as possible.
    _move_votes(payment, payment.votes)
    return settlement


# An atomic increment like F("votes") + n, on the payment's shard, creating the row the first
# time: two credits landing on one shard serialise on that row, never read-modify-write.
_ADD_TO_SHARD = f"""
INSERT INTO {VoteShard._meta.db_table} (contestant_id, shard, votes) VALUES (%s, %s, %s)
ON CONFLICT (contestant_id, shard)
DO UPDATE SET votes = {VoteShard._meta.db_table}.votes + EXCLUDED.votes
"""


def _move_votes(payment: Payment, votes: int) -> None:
    shard = VoteShard.shard_of(payment.pk)
    if votes < 0:
        # A reversal: its credit created this shard row, and PostgreSQL checks a proposed
        # INSERT's constraints before ON CONFLICT, so a negative upsert would be refused.
        VoteShard.objects.filter(contestant_id=payment.contestant_id, shard=shard).update(
            votes=F("votes") + votes
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(_ADD_TO_SHARD, [payment.contestant_id, shard, votes])


_OUTCOME_OF_STATUS = {
    Payment.Status.CREDITED: Outcome.CREDITED,
    Payment.Status.FAILED: Outcome.FAILED,
    Payment.Status.FLAGGED: Outcome.FLAGGED,
    Payment.Status.REVERSED: Outcome.REVERSED,
}


_SETTLED_FIELDS = [
    "status",
    "reason",
    "gateway_id",
    "paid_at",
    "verified_at",
    "credited_at",
    "updated_at",
]


def _finish(payment: Payment, status: Payment.Status, reason: str) -> Settlement:
    """Move a locked payment to `status`, recording the step in its history."""
    PaymentTransition.objects.create(
        payment=payment, from_status=payment.status, to_status=status, reason=reason
    )
    payment.status = status
    payment.reason = reason
    payment.save(update_fields=_SETTLED_FIELDS)
    logger.info(
        "payment settled",
        extra={"reference": payment.reference, "outcome": status.value, "reason": reason},
    )
    return Settlement(_OUTCOME_OF_STATUS[status], payment)
