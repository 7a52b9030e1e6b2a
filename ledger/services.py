"""Every write that moves money status or votes. Callers ask the gateway first and pass its
answer in; each function here locks the payment row, re-checks, writes, and returns.

The rules (docs/contract.md, payment statuses): credit only on the gateway's verified success
with our amount and currency; never credit while a refund is recorded; a `failed` payment is
not final for money; take votes back once when the gateway confirms the charge reversed.
"""

import logging
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Count, F, Sum
from django.utils import timezone

from ledger import selectors
from ledger.models import (
    Certification,
    CertifiedTotal,
    Contest,
    Contestant,
    Dispute,
    LedgerEntry,
    Payment,
    PaymentTransition,
    Refund,
    VoteShard,
)
from paystack.types import RefundNotice, Verification

logger = logging.getLogger(__name__)

REFERENCE_PREFIX = "tly-"
PAID_AFTER_FAILED = "paid after it was closed as failed"
PAID_AFTER_CLOSE = "paid after voting closed: refund"


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
# under the row lock, which is what makes it exactly once. `failed` is not final for money:
# a payer can still complete an abandoned checkout, so a success for it is verified again.
AWAITING_SETTLEMENT = frozenset({Payment.Status.PENDING, Payment.Status.FAILED})
AWAITING_REVERSAL = frozenset(
    {Payment.Status.PENDING, Payment.Status.CREDITED, Payment.Status.FLAGGED}
)


# --- how the rules write ----------------------------------------------------------------------


class _Writes(Protocol):
    """Where the settle rules send their writes: at once (one payment), or gathered and
    written together (a batch). The rules are the same either way; only the round trips
    differ."""

    def entry(self, entry: LedgerEntry) -> None: ...
    def transition(self, transition: PaymentTransition) -> None: ...
    def payment(self, payment: Payment) -> None: ...
    def votes(self, payment: Payment, votes: int) -> None: ...


class _WriteNow:
    def entry(self, entry: LedgerEntry) -> None:
        entry.save()

    def transition(self, transition: PaymentTransition) -> None:
        transition.save()

    def payment(self, payment: Payment) -> None:
        payment.save(update_fields=_SETTLED_FIELDS)

    def votes(self, payment: Payment, votes: int) -> None:
        _move_votes(payment, votes)


class _WriteTogether:
    """Gathers a batch's writes: `write_rows` inserts the entries and transitions and updates
    the payments, one statement each; `move_votes` adds the credits in one upsert."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []
        self.transitions: list[PaymentTransition] = []
        self.payments: dict[int, Payment] = {}
        self.credits: Counter[tuple[int, int]] = Counter()  # (contestant, shard) → votes

    def entry(self, entry: LedgerEntry) -> None:
        self.entries.append(entry)

    def transition(self, transition: PaymentTransition) -> None:
        self.transitions.append(transition)

    def payment(self, payment: Payment) -> None:
        self.payments[payment.pk] = payment

    def votes(self, payment: Payment, votes: int) -> None:
        if votes < 0:
            _move_votes(payment, votes)  # a reversal checks its shard row: one at a time
            return
        self.credits[(payment.contestant_id, VoteShard.shard_of(payment.pk))] += votes

    def write_rows(self) -> None:
        LedgerEntry.objects.bulk_create(self.entries)
        PaymentTransition.objects.bulk_create(self.transitions)
        if self.payments:
            _update_settled(list(self.payments.values()))

    def move_votes(self) -> None:
        if not self.credits:
            return
        # Sorted: every batch takes the shard rows' locks in one order, so two batches
        # crediting the same shards queue behind each other instead of deadlocking.
        rows = sorted(self.credits.items())
        values = ", ".join(["(%s, %s, %s)"] * len(rows))
        with connection.cursor() as cursor:
            cursor.execute(
                _ADD_TO_SHARDS.format(values=values),
                [
                    value
                    for (contestant, shard), votes in rows
                    for value in (contestant, shard, votes)
                ],
            )


_WRITE_NOW = _WriteNow()


def _update_settled(payments: list[Payment]) -> None:
    """Write `_SETTLED_FIELDS` of locked payments in one statement, as
    `payment.save(update_fields=_SETTLED_FIELDS)` would one by one (updated_at stamped now, as
    auto_now does). bulk_update would build a CASE WHEN per row and field in Python: the
    largest cost of a batch's transaction when profiled. The columns and their types come from
    the model, so the statement follows `_SETTLED_FIELDS`."""
    now = timezone.now()
    model_fields = Payment._meta.concrete_fields
    key = next(field for field in model_fields if field.primary_key)
    fields = [field for field in model_fields if field.name in _SETTLED_FIELDS]
    columns = [key, *fields]
    row = "(" + ", ".join(f"%s::{field.db_type(connection)}" for field in columns) + ")"
    values: list[Any] = []
    for payment in payments:
        payment.updated_at = now
        values += [getattr(payment, field.attname) for field in columns]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Payment._meta.db_table} AS payment
            SET {", ".join(f"{field.column} = settled.{field.column}" for field in fields)}
            FROM (VALUES {", ".join([row] * len(payments))})
                AS settled ({", ".join(f"{field.column}" for field in columns)})
            WHERE payment.{key.column} = settled.{key.column}
            """,
            values,
        )


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


# --- settling a charge ----------------------------------------------------------------------


def settle_payment(*, reference: str, verification: Verification) -> Settlement:
    """Apply the gateway's verdict on a charge once; a settled payment is left as is."""
    # savepoint=False: inside a caller's transaction (a task recording its delivery with the
    # credit) all of it commits or rolls back together, without a savepoint's extra round trips.
    with transaction.atomic(savepoint=False):
        # The row lock serialises every delivery, callback, replay and reconcile of this
        # reference: whoever comes second sees the status the first one committed.
        return _settle_locked(_locked(reference), verification, writes=_WRITE_NOW)


def settle_payments(
    *,
    verifications: Mapping[str, Verification],
    record: Callable[[dict[str, Settlement]], None] | None = None,
) -> dict[str, Settlement]:
    """`settle_payment` for many references at once (a batch of deliveries), by the same
    rules, in one transaction; references that are not ours are left out of the answer.

    The payments are locked in id order in one SELECT … FOR UPDATE (two batches sharing
    payments wait for each other, never deadlock); the entries and transitions go in with
    one multi-row INSERT each, the payments change in one UPDATE, and the votes move in one
    upsert over every (contestant, shard) the batch credits, in one order. `record` gets
    every settlement inside the transaction, before the votes move (the shard rows stay
    locked as briefly as possible).
    """
    with transaction.atomic(savepoint=False):
        payments = (
            Payment.objects.select_for_update(of=("self",))
            .select_related("contestant__contest")
            .filter(reference__in=list(verifications))
            .order_by("pk")
        )
        writes = _WriteTogether()
        settlements = {
            payment.reference: _settle_locked(
                payment, verifications[payment.reference], writes=writes
            )
            for payment in payments
        }
        writes.write_rows()
        if record is not None:
            record(settlements)
        writes.move_votes()
        return settlements


def _settle_locked(payment: Payment, verification: Verification, *, writes: _Writes) -> Settlement:
    """The rules of settling a charge, on a payment locked by the caller."""
    if payment.status not in AWAITING_SETTLEMENT:
        return Settlement(Outcome.ALREADY_SETTLED, payment)
    payment.verified_at = timezone.now()
    if payment.status == Payment.Status.FAILED:
        return _settle_failed(payment, verification, writes=writes)
    if verification.status == "reversed":
        return _reverse_locked(payment, "reversed before it was credited", writes=writes)
    if payment.refund_recorded_at is not None:
        # A refund is on record: the money is going back, so it never counts. The refund's
        # own confirmation (verify says reversed) closes the payment.
        return Settlement(Outcome.STILL_PENDING, payment)
    if verification.status == "success":
        return _credit_or_flag(payment, verification, reason="", writes=writes)
    if verification.status == "failed":
        return _finish(
            payment, Payment.Status.FAILED, "the gateway says the charge failed", writes=writes
        )
    if verification.status == "abandoned" and is_expired(payment):
        return _finish(payment, Payment.Status.FAILED, "abandoned and expired", writes=writes)
    return Settlement(Outcome.STILL_PENDING, payment)


def _settle_failed(payment: Payment, verification: Verification, *, writes: _Writes) -> Settlement:
    """A payment we closed as failed that the gateway now reports paid still counts."""
    if verification.status != "success" or payment.refund_recorded_at is not None:
        return Settlement(Outcome.ALREADY_SETTLED, payment)
    return _credit_or_flag(payment, verification, reason=PAID_AFTER_FAILED, writes=writes)


def _credit_or_flag(
    payment: Payment, verification: Verification, *, reason: str, writes: _Writes
) -> Settlement:
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
        return _flag(payment, Payment.Attention.MISMATCH, "; ".join(mismatches), writes=writes)
    paid_at = verification.paid_at or payment.verified_at or timezone.now()
    if paid_at >= payment.contestant.contest.closes_at:
        return _flag(payment, Payment.Attention.PAID_AFTER_CLOSE, PAID_AFTER_CLOSE, writes=writes)
    return _credit(payment, reason=reason, writes=writes)


def _credit(
    payment: Payment, *, reason: str, actor: str = "", writes: _Writes = _WRITE_NOW
) -> Settlement:
    writes.entry(
        LedgerEntry(
            payment=payment,
            contestant_id=payment.contestant_id,
            kind=LedgerEntry.Kind.CREDIT,
            votes=payment.votes,
        )
    )
    payment.credited_at = payment.verified_at or timezone.now()
    payment.attention = Payment.Attention.NONE
    settlement = _finish(payment, Payment.Status.CREDITED, reason, actor=actor, writes=writes)
    # Last statement before COMMIT: the shard row stays locked as briefly as possible.
    writes.votes(payment, payment.votes)
    return settlement


def _flag(
    payment: Payment, attention: Payment.Attention, reason: str, *, writes: _Writes = _WRITE_NOW
) -> Settlement:
    payment.attention = attention
    return _finish(payment, Payment.Status.FLAGGED, reason, writes=writes)


# --- taking votes back ----------------------------------------------------------------------


def reverse_payment(
    *,
    reference: str,
    verification: Verification,
    refund_confirmed: bool = False,
    reason: str = "refunded",
) -> Settlement:
    """Take a payment's votes back once the gateway confirms the charge reversed.

    Confirmed means verify says `reversed`, or (`refund_confirmed`) the gateway's own refund
    record says processed (a partial refund leaves verify at `success`; all of the payment's
    votes still go back: no vote stands on money that went back). Unconfirmed changes nothing.
    """
    with transaction.atomic(savepoint=False):
        payment = _locked(reference)
        if verification.status != "reversed" and not refund_confirmed:
            # The gateway is the truth: a refund it does not confirm changes nothing yet.
            return Settlement(Outcome.STILL_PENDING, payment)
        if payment.status not in AWAITING_REVERSAL:
            return Settlement(Outcome.ALREADY_SETTLED, payment)
        return _reverse_locked(payment, reason)


def _reverse_locked(
    payment: Payment, reason: str, *, actor: str = "", writes: _Writes = _WRITE_NOW
) -> Settlement:
    """Close a locked payment as reversed; a credited one gives its votes back once."""
    payment.refunds.exclude(status=Refund.Status.FAILED).filter(confirmed_at=None).update(
        confirmed_at=timezone.now()
    )
    was_credited = payment.status == Payment.Status.CREDITED
    if was_credited:
        writes.entry(
            LedgerEntry(
                payment=payment,
                contestant_id=payment.contestant_id,
                kind=LedgerEntry.Kind.REVERSAL,
                votes=-payment.votes,
            )
        )
    payment.attention = Payment.Attention.NONE
    settlement = _finish(payment, Payment.Status.REVERSED, reason, actor=actor, writes=writes)
    if was_credited:
        writes.votes(payment, -payment.votes)
    return settlement


# --- refunds ----------------------------------------------------------------------------------


_REFUND_STAGE = {
    Refund.Status.PENDING: 0,
    Refund.Status.PROCESSING: 1,
    Refund.Status.NEEDS_ATTENTION: 2,
    Refund.Status.PROCESSED: 3,
    Refund.Status.FAILED: 3,
}
_FINAL_REFUND = frozenset({Refund.Status.PROCESSED, Refund.Status.FAILED})


def record_refund(*, reference: str, notice: RefundNotice) -> Refund:
    """Record a refund event on its payment at once (no gateway call).

    While a refund is recorded (and not failed) the payment is never credited; `failed`
    clears the record; `needs-attention` asks a person to look.
    """
    with transaction.atomic(savepoint=False):
        payment = _locked(reference)
        refund = _refund_for(payment, notice)
        refund.status = _later_refund_status(refund.status, notice.status)
        refund.refund_reference = refund.refund_reference or notice.refund_reference
        refund.amount = notice.amount if notice.amount is not None else refund.amount
        refund.currency = refund.currency or notice.currency
        refund.save()
        open_refunds = payment.refunds.exclude(status=Refund.Status.FAILED)
        payment.refund_recorded_at = (
            (payment.refund_recorded_at or timezone.now()) if open_refunds.exists() else None
        )
        payment.save(update_fields=["refund_recorded_at", "updated_at"])
        if notice.status == Refund.Status.NEEDS_ATTENTION:
            _needs_attention(
                payment,
                Payment.Attention.REFUND_NEEDS_ATTENTION,
                "the gateway says a refund needs attention",
            )
        logger.info(
            "refund recorded",
            extra={"reference": reference, "outcome": refund.status, "refund": refund.pk},
        )
        return refund


def _refund_for(payment: Payment, notice: RefundNotice) -> Refund:
    """The refund this event is about.

    With a reference: the refund that has it, else the open one still without one (its
    earlier events carried none). Without one (pending, processing): the latest refund not
    failed, which a late event of a refund that already went through also finds. Else new.
    """
    refunds = list(payment.refunds.all())
    if notice.refund_reference:
        for refund in refunds:
            if refund.refund_reference == notice.refund_reference:
                return refund
        for refund in reversed(refunds):
            if not refund.refund_reference and refund.status not in _FINAL_REFUND:
                return refund
        return Refund(payment=payment)
    for refund in reversed(refunds):
        if refund.status != Refund.Status.FAILED:
            return refund
    return Refund(payment=payment)


def _later_refund_status(current: str, new: str) -> str:
    """Events of one refund arrive in any order: a later stage never steps back to an earlier
    one, and a refund that ended one way does not end the other way on a late event."""
    if not current:
        return new
    if current in _FINAL_REFUND:
        return current
    return (
        new
        if _REFUND_STAGE[Refund.Status(new)] >= _REFUND_STAGE[Refund.Status(current)]
        else current
    )


def flag_unconfirmed_refund(*, reference: str) -> Settlement:
    """A recorded refund the gateway has not confirmed within PAYMENT_EXPIRES_AFTER_SECONDS:
    a person decides. A credited payment keeps its votes (the gateway still says paid)."""
    with transaction.atomic(savepoint=False):
        payment = _locked(reference)
        if payment.refund_recorded_at is None or payment.status == Payment.Status.REVERSED:
            return Settlement(Outcome.ALREADY_SETTLED, payment)
        return _needs_attention(
            payment,
            Payment.Attention.REFUND_UNCONFIRMED,
            "a refund was reported that the gateway has not confirmed",
        )


def _needs_attention(payment: Payment, attention: Payment.Attention, reason: str) -> Settlement:
    """Ask a person to look. An uncredited payment is flagged (no votes while flagged); a
    credited one keeps its status and votes, marked for attention."""
    if payment.status in (Payment.Status.PENDING, Payment.Status.FAILED):
        return _flag(payment, attention, reason)
    if payment.status in (Payment.Status.CREDITED, Payment.Status.FLAGGED):
        payment.attention = attention
        payment.reason = reason
        payment.save(update_fields=["attention", "reason", "updated_at"])
        return Settlement(Outcome.FLAGGED, payment)
    return Settlement(Outcome.ALREADY_SETTLED, payment)


# --- disputes ---------------------------------------------------------------------------------


def open_dispute(*, reference: str, dispute_id: str, reminded: bool) -> Dispute:
    """A chargeback was opened (or reminded): the votes stay counted, shown as under dispute.

    A dispute already resolved (its resolve event came first) stays resolved.
    """
    with transaction.atomic(savepoint=False):
        payment = _locked(reference)
        dispute, _ = Dispute.objects.get_or_create(
            gateway_id=dispute_id, defaults={"payment": payment}
        )
        if reminded and dispute.status == Dispute.Status.OPEN:
            dispute.reminded_at = timezone.now()
            dispute.save(update_fields=["reminded_at"])
        return dispute


def resolve_dispute(
    *, reference: str, dispute_id: str, resolution: str, verification: Verification
) -> Settlement:
    """Close a chargeback on the gateway's verdict: reversed → the votes go back once;
    otherwise the votes stand. A repeated resolve changes nothing."""
    with transaction.atomic(savepoint=False):
        payment = _locked(reference)
        dispute, _ = Dispute.objects.get_or_create(
            gateway_id=dispute_id, defaults={"payment": payment}
        )
        if dispute.status == Dispute.Status.RESOLVED:
            return Settlement(Outcome.ALREADY_SETTLED, payment)
        dispute.status = Dispute.Status.RESOLVED
        dispute.resolution = resolution[:64]
        dispute.resolved_at = timezone.now()
        if verification.status == "reversed":
            dispute.outcome = Dispute.Outcome.REVERSED
            dispute.save()
            if payment.status not in AWAITING_REVERSAL:
                return Settlement(Outcome.ALREADY_SETTLED, payment)
            return _reverse_locked(payment, "chargeback lost")
        dispute.outcome = Dispute.Outcome.VOTES_STAND
        dispute.save()
        return Settlement(Outcome.ALREADY_SETTLED, payment)


# --- a person decides -------------------------------------------------------------------------


class Decision(StrEnum):
    CREDIT = "credit"  # credit anyway: the money is ours and the votes count
    REFUNDED = "refunded"  # the money went back: no votes
    KEEP = "keep"  # a credited payment keeps its votes; nothing to refund


class CannotResolve(Exception):
    """The decision does not apply to the payment as it is now; the message says why."""


def resolve_attention(*, reference: str, decision: Decision, actor: str, note: str) -> Settlement:
    """Apply a person's decision on a payment that needs attention, recording who and why."""
    if not actor or not note.strip():
        raise CannotResolve("say who decides and why")
    with transaction.atomic():  # a savepoint: a refusal leaves a caller's transaction usable
        payment = _locked(reference)
        if payment.attention == Payment.Attention.NONE:
            raise CannotResolve(f"{reference} does not need attention (it is {payment.status})")
        why = f"{decision.value} by {actor}: {note.strip()}"
        if decision == Decision.REFUNDED:
            return _reverse_locked(payment, why, actor=actor)
        if decision == Decision.CREDIT and payment.status == Payment.Status.FLAGGED:
            payment.verified_at = timezone.now()
            return _credit(payment, reason=why, actor=actor)
        if decision == Decision.KEEP and payment.status == Payment.Status.CREDITED:
            payment.attention = Payment.Attention.NONE
            return _finish(payment, Payment.Status.CREDITED, why, actor=actor)
        raise CannotResolve(f"'{decision.value}' does not apply to a {payment.status} payment")


# --- certified results ----------------------------------------------------------------------

# Leaves per stored block of a certification's tree (a power of two): a receipt's proof reads
# one block of entries; the certification keeps 32 bytes per block (32 KB per million entries).
RESULT_BLOCK_LEAVES = 1024
# How long finding the ledger horizon may wait for ledger writes in flight (and hold new ones
# back behind it); past it, this run gives up and the next one tries again.
HORIZON_LOCK_TIMEOUT = "2s"
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout ran out


class ContestNotClosed(Exception):
    """Voting in the contest has not closed yet; nothing to certify."""

    @staticmethod
    def about(contest: Contest) -> str:
        return f"{contest.slug} closes at {contest.closes_at.isoformat()}; certify it after that"


class LedgerBusy(Exception):
    """Ledger writes in flight did not finish within HORIZON_LOCK_TIMEOUT; try again."""


class CertifyOutcome(StrEnum):
    CERTIFIED = "certified"
    AMENDED = "amended"
    UNCHANGED = "unchanged"  # certified, and nothing in the ledger has changed since


@dataclass(frozen=True)
class Certifying:
    outcome: CertifyOutcome
    certification: Certification


def certify_contest(*, contest_id: int, actor: str = "") -> Certifying:
    """Freeze a closed contest's result, or amend it when its ledger has moved since.

    Beat's job and certify_contest both certify through this one function, and record each
    call in the operator log around it (ledger.operator_log.recorded wants no transaction
    open, so the log's row is committed before the work starts); `actor` names who, empty for
    beat, on the certification itself.

    1. Refuse a contest still open or upcoming (ContestNotClosed).
    2. Certified already, and no entry of the contest past the latest horizon: unchanged,
       without taking any lock.
    3. Find the ledger horizon: the highest entry id no later write can go below.
    4. Recompute the result from the contest's entries up to it (no lock held): totals, votes
       under dispute, the Merkle tree's blocks and root; and count its flagged payments.
    5. One transaction under the contest's row lock: if another run wrote this already, it
       stands (unchanged); else write certification 0, or the next amendment with what it
       changes. The unique (contest, number) stops a second one even without the lock.
    """
    contest = Contest.objects.get(pk=contest_id)
    if timezone.now() < contest.closes_at:
        raise ContestNotClosed(ContestNotClosed.about(contest))
    latest = selectors.latest_certification(contest=contest)
    if latest is not None and not selectors.has_entries_between(
        contest=contest, after=latest.horizon
    ):
        return Certifying(CertifyOutcome.UNCHANGED, latest)
    horizon = _ledger_horizon()
    result = selectors.ledger_result(
        contest=contest, horizon=horizon, chunk_size=RESULT_BLOCK_LEAVES
    )
    flagged = selectors.flagged_by_reason(contest=contest)
    with transaction.atomic():
        Contest.objects.select_for_update().get(pk=contest.pk)
        latest = selectors.latest_certification(contest=contest)
        if latest is not None and not selectors.has_entries_between(
            contest=contest, after=latest.horizon, up_to=horizon
        ):
            return Certifying(CertifyOutcome.UNCHANGED, latest)  # a concurrent run wrote it
        certification = _write_certification(contest, result, flagged, latest, actor=actor)
    outcome = CertifyOutcome.CERTIFIED if latest is None else CertifyOutcome.AMENDED
    logger.info(
        "contest certified",
        extra={
            "contest": contest.slug,
            "outcome": outcome.value,
            "number": certification.number,
            "entries": certification.entries,
            "root": certification.root,
        },
    )
    return Certifying(outcome, certification)


def _write_certification(
    contest: Contest,
    result: "selectors.LedgerResult",
    flagged: dict[str, int],
    latest: Certification | None,
    *,
    actor: str,
) -> Certification:
    certification = Certification.objects.create(
        contest=contest,
        number=0 if latest is None else latest.number + 1,
        root=result.root.hex(),
        entries=result.entries,
        horizon=result.horizon,
        chunk_size=result.chunk_size,
        chunk_roots=b"".join(result.chunk_roots),
        chunk_starts=result.chunk_starts,
        flagged=flagged,
        reason="" if latest is None else _amendment_reason(contest, latest, result.horizon),
        actor=actor,
        certified_at=timezone.now(),
    )
    CertifiedTotal.objects.bulk_create(
        CertifiedTotal(
            certification=certification,
            contestant_id=contestant_id,
            votes=votes,
            votes_under_dispute=result.under_dispute[contestant_id],
        )
        for contestant_id, votes in sorted(result.votes.items())
    )
    return certification


def _amendment_reason(contest: Contest, latest: Certification, horizon: int) -> str:
    """E.g. "2 ledger entries since the certification: 1 credit (+2 votes), 1 reversal (-3
    votes)"."""
    new = (
        selectors.entries_of(contest=contest)
        .filter(id__gt=latest.horizon, id__lte=horizon)
        .values("kind")
        .annotate(count=Count("pk"), votes=Sum("votes"))
        .order_by("kind")
    )
    parts = [f"{row['count']} {row['kind']} ({row['votes']:+d} votes)" for row in new]
    since = "the certification" if latest.number == 0 else f"amendment {latest.number}"
    total = sum(row["count"] for row in new)
    entries = "ledger entry" if total == 1 else "ledger entries"
    return f"{total} {entries} since {since}: {', '.join(parts)}"


def _ledger_horizon() -> int:
    """The highest ledger entry id below which no entry can still appear.

    An entry's id is drawn when its INSERT runs, but the row shows only at COMMIT: a reader
    may see entry 12 while entry 11 is still on its way, and a result over "entries up to 12"
    would silently miss it. LOCK TABLE … IN SHARE MODE waits for every transaction that has
    written an entry (each holds ROW EXCLUSIVE until it ends) and keeps new writes out while
    held, so max(id) read under it is final: every later entry draws a larger id. The lock is
    held for that one read, never while a result is computed; writes wait behind it at most
    HORIZON_LOCK_TIMEOUT, and then this run gives up (LedgerBusy).
    """
    table = connection.ops.quote_name(LedgerEntry._meta.db_table)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('lock_timeout')")
            before = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [HORIZON_LOCK_TIMEOUT])
            cursor.execute(f"LOCK TABLE {table} IN SHARE MODE")
            cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
            horizon = int(cursor.fetchone()[0])
            # Inside a caller's transaction the setting would outlive this block.
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [before])
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise LedgerBusy(
            f"ledger writes in flight held the ledger past {HORIZON_LOCK_TIMEOUT}"
        ) from exc
    return horizon


# --- reconciliation -------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyClaim:
    """Whether this caller may ask the gateway about a payment now."""

    won: bool
    stamp: datetime | None = None  # our verified_at, to give back if the call fails
    seconds_left: float = 0.0  # when lost: until the cooldown ends


def claim_verify(*, reference: str) -> VerifyClaim:
    """One verify per payment per VERIFY_COOLDOWN_SECONDS, whoever asks (a delivery, the
    payer's callback, reconciliation, the audit): one conditional UPDATE of `verified_at`,
    taken before the call, on the database's clock. The caller that loses does not call: the
    winner's answer settles the payment, or the loser looks again after the cooldown."""
    cooldown = settings.VERIFY_COOLDOWN_SECONDS
    table = Payment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} SET verified_at = statement_timestamp()
            WHERE reference = %s
              AND (verified_at IS NULL
                   OR verified_at <= statement_timestamp() - make_interval(secs => %s))
            RETURNING verified_at
            """,
            [reference, cooldown],
        )
        won = cursor.fetchone()
        if won is not None:
            return VerifyClaim(won=True, stamp=won[0])
        cursor.execute(
            f"""
            SELECT EXTRACT(
                EPOCH FROM verified_at + make_interval(secs => %s) - statement_timestamp()
            )
            FROM {table} WHERE reference = %s
            """,
            [cooldown, reference],
        )
        left = cursor.fetchone()
    return VerifyClaim(won=False, seconds_left=max(float(left[0] or 0) if left else 0.0, 0.0))


def claim_verifies(*, references: list[str]) -> dict[str, VerifyClaim | None]:
    """`claim_verify` for a batch, in one statement that also reads each payment's status.

    Per reference that is ours: None when no verdict can change the payment any more (it
    is not verified again), else its claim, won or lost as `claim_verify` would decide.
    References that are not ours are left out. The claims are taken in id order (two
    batches sharing a payment queue, never deadlock); the status and the time left are as
    the statement found them.
    """
    table = Payment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH claimed AS (
                UPDATE {table} SET verified_at = statement_timestamp()
                WHERE id IN (
                    SELECT id FROM {table}
                    WHERE reference = ANY(%(references)s) AND status = ANY(%(awaiting)s)
                      AND (verified_at IS NULL
                           OR verified_at <= statement_timestamp()
                                             - make_interval(secs => %(cooldown)s))
                    ORDER BY id
                    FOR UPDATE
                )
                RETURNING id, verified_at
            )
            SELECT payment.reference, payment.status = ANY(%(awaiting)s), claimed.verified_at,
                EXTRACT(EPOCH FROM payment.verified_at + make_interval(secs => %(cooldown)s)
                                   - statement_timestamp())
            FROM {table} AS payment LEFT JOIN claimed ON claimed.id = payment.id
            WHERE payment.reference = ANY(%(references)s)
            """,
            {
                "references": references,
                "awaiting": list(AWAITING_SETTLEMENT),
                "cooldown": settings.VERIFY_COOLDOWN_SECONDS,
            },
        )
        rows = cursor.fetchall()
    return {
        reference: None
        if not awaiting
        else VerifyClaim(won=True, stamp=stamp)
        if stamp is not None
        else VerifyClaim(won=False, seconds_left=max(float(left or 0), 0.0))
        for reference, awaiting, stamp, left in rows
    }


def release_verify(*, reference: str, claim: VerifyClaim) -> None:
    """The call failed (an outage): it does not count, so a retry may ask again at once."""
    Payment.objects.filter(reference=reference, verified_at=claim.stamp).update(verified_at=None)


def verified_within_cooldown(payment: Payment, *, now: datetime) -> bool:
    """True when a verify of this payment would be refused now (see claim_verify)."""
    cooldown = timedelta(seconds=settings.VERIFY_COOLDOWN_SECONDS)
    return payment.verified_at is not None and payment.verified_at > now - cooldown


def expire_payment(*, reference: str, reason: str) -> Settlement:
    """Close a payment the gateway never saw paid (never initialised, or long abandoned)."""
    with transaction.atomic():
        payment = _locked(reference)
        if payment.status != Payment.Status.PENDING:
            return Settlement(Outcome.ALREADY_SETTLED, payment)
        return _finish(payment, Payment.Status.FAILED, reason)


# --- retention ------------------------------------------------------------------------------

HASHED_EMAIL_PREFIX = "sha256:"


def forget_payer_emails(*, created_before: datetime, limit: int) -> int:
    """Replace the payer's email of up to `limit` payments created before the cutoff by its
    SHA-256 (of the lower-cased address), oldest first: the person is no longer named, yet the
    same payer still hashes the same. Receipts and results do not use emails. Returns how
    many were replaced; a second run replaces none of them again."""
    table = Payment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} SET email = %s || encode(sha256(convert_to(lower(email), 'UTF8')), 'hex')
            WHERE id IN (
                SELECT id FROM {table}
                WHERE created_at < %s AND email NOT LIKE %s
                ORDER BY id LIMIT %s
            )
            """,
            [HASHED_EMAIL_PREFIX, created_before, f"{HASHED_EMAIL_PREFIX}%", limit],
        )
        return int(cursor.rowcount)


def payer_emails_to_forget(*, created_before: datetime) -> int:
    return (
        Payment.objects.filter(created_at__lt=created_before)
        .exclude(email__startswith=HASHED_EMAIL_PREFIX)
        .count()
    )


def is_expired(payment: Payment) -> bool:
    """True once a payment has had PAYMENT_EXPIRES_AFTER_SECONDS to be paid."""
    return payment.created_at <= expiry_cutoff()


def refund_overdue(payment: Payment) -> bool:
    """True once a recorded refund has had PAYMENT_EXPIRES_AFTER_SECONDS to be confirmed."""
    recorded = payment.refund_recorded_at
    return recorded is not None and recorded <= expiry_cutoff()


def expiry_cutoff() -> datetime:
    return timezone.now() - timedelta(seconds=settings.PAYMENT_EXPIRES_AFTER_SECONDS)


# --- the writes every path shares -----------------------------------------------------------


def _locked(reference: str) -> Payment:
    """The payment row, locked until the transaction ends, with its contest (no lock on it)."""
    return (
        Payment.objects.select_for_update(of=("self",))
        .select_related("contestant__contest")
        .get(reference=reference)
    )


# An atomic increment like F("votes") + n, on the payment's shard, creating the row the first
# time: two credits landing on one shard serialise on that row, never read-modify-write.
_ADD_TO_SHARDS = f"""
INSERT INTO {VoteShard._meta.db_table} (contestant_id, shard, votes) VALUES {{values}}
ON CONFLICT (contestant_id, shard)
DO UPDATE SET votes = {VoteShard._meta.db_table}.votes + EXCLUDED.votes
"""
_ADD_TO_SHARD = _ADD_TO_SHARDS.format(values="(%s, %s, %s)")


class LedgerOutOfBalance(Exception):
    """A vote move found no shard row to move: writing the entry would unbalance the ledger."""


def _move_votes(payment: Payment, votes: int) -> None:
    shard = VoteShard.shard_of(payment.pk)
    if votes < 0:
        # A reversal: its credit created this shard row, and PostgreSQL checks a proposed
        # INSERT's constraints before ON CONFLICT, so a negative upsert would be refused.
        moved = VoteShard.objects.filter(contestant_id=payment.contestant_id, shard=shard).update(
            votes=F("votes") + votes
        )
        if moved != 1:
            # Raising rolls the reversal entry back with it: never an entry without its votes.
            raise LedgerOutOfBalance(
                f"no vote shard {shard} of contestant {payment.contestant_id} to take "
                f"{-votes} votes from for {payment.reference}"
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
    "attention",
    "gateway_id",
    "paid_at",
    "verified_at",
    "credited_at",
    "updated_at",
]


def _finish(
    payment: Payment,
    status: Payment.Status,
    reason: str,
    *,
    actor: str = "",
    writes: _Writes = _WRITE_NOW,
) -> Settlement:
    """Move a locked payment to `status`, recording the step in its history."""
    writes.transition(
        PaymentTransition(
            payment=payment,
            from_status=payment.status,
            to_status=status,
            reason=reason,
            actor=actor,
        )
    )
    payment.status = status
    payment.reason = reason
    writes.payment(payment)
    logger.info(
        "payment settled",
        extra={"reference": payment.reference, "outcome": status.value, "reason": reason},
    )
    return Settlement(_OUTCOME_OF_STATUS[status], payment)
