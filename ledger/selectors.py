"""Shared reads of the ledger."""

from datetime import datetime
from typing import TYPE_CHECKING, cast

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from ledger.models import Contest, Contestant, ContestantVotes, Dispute, LedgerEntry, Payment

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class LedgerBalance(ContestantVotes):
    """A contestant's total beside the sum of its ledger entries."""

    ledger_votes: int


class VotesUnderDispute(ContestantVotes):
    """A contestant's total and the part of it whose payments have an open chargeback."""

    votes_under_dispute: int


def contestants_out_of_balance() -> "QuerySet[WithAnnotations[Contestant, LedgerBalance]]":
    """Contestants whose total differs from the sum of their ledger entries (should be none)."""
    ledger_total = (
        LedgerEntry.objects.filter(contestant=OuterRef("pk"))
        .values("contestant")
        .annotate(total=Sum("votes"))
        .values("total")
    )
    out_of_balance = (
        Contestant.objects.with_votes()
        .annotate(ledger_votes=Coalesce(Subquery(ledger_total), 0))
        .exclude(votes=F("ledger_votes"))
        .order_by("id")
    )
    # Coalesce(..., 0) is an int, but the type checker types every annotate() value as Any.
    return cast("QuerySet[WithAnnotations[Contestant, LedgerBalance]]", out_of_balance)


def payments_to_reconcile(
    *, created_before: datetime, created_after: datetime | None = None
) -> QuerySet[Payment]:
    """Payments reconciliation looks at, the least recently verified first (so payments that
    stay open for hours never starve newer ones of a check):

    - pending, created in the window;
    - with a refund recorded (before `created_before`) that the gateway has not confirmed.
    """
    window = Q(created_at__lt=created_before)
    if created_after is not None:
        window &= Q(created_at__gte=created_after)
    pending = window & Q(status=Payment.Status.PENDING, refund_recorded_at__isnull=True)
    refunding = Q(
        refund_recorded_at__lt=created_before,
        status__in=[Payment.Status.PENDING, Payment.Status.CREDITED, Payment.Status.FLAGGED],
    )
    return Payment.objects.filter(pending | refunding).order_by(
        F("verified_at").asc(nulls_first=True), "created_at"
    )


def open_contest(*, now: datetime) -> Contest | None:
    """The contest open for votes now (the earliest to close, if several are)."""
    return (
        Contest.objects.filter(opens_at__lte=now, closes_at__gt=now).order_by("closes_at").first()
    )


def contestants_of(
    *, contest: Contest | None
) -> "QuerySet[WithAnnotations[Contestant, VotesUnderDispute]]":
    """A contest's contestants in a stable order (by id) with `votes` and
    `votes_under_dispute` (credited votes whose payment has an open chargeback); none when
    there is no contest.

    Taking `None` lets a view pass `open_contest(...)` straight through when voting is closed.
    """
    disputed = (
        Payment.objects.filter(contestant=OuterRef("pk"), status=Payment.Status.CREDITED)
        .filter(Exists(Dispute.objects.filter(payment=OuterRef("pk"), status=Dispute.Status.OPEN)))
        .values("contestant")
        .annotate(total=Sum("votes"))
        .values("total")
    )
    # Coalesce(..., 0) is an int, but the type checker types every annotate() value as Any.
    contestants = cast(
        "QuerySet[WithAnnotations[Contestant, VotesUnderDispute]]",
        Contestant.objects.with_votes().annotate(
            votes_under_dispute=Coalesce(Subquery(disputed), 0)
        ),
    )
    if contest is None:
        return contestants.none()
    return contestants.filter(contest=contest).order_by("id")


def latest_dispute(payment: Payment) -> Dispute | None:
    return payment.disputes.order_by("-opened_at", "-id").first()


def open_disputes() -> int:
    """Payments under an open chargeback now."""
    return Dispute.objects.filter(status=Dispute.Status.OPEN).values("payment").distinct().count()


def needing_attention() -> dict[str, int]:
    """{reason: payments a person has not decided about yet} (the partial index serves it)."""
    rows = (
        Payment.objects.exclude(attention=Payment.Attention.NONE)
        .values("attention")
        .annotate(count=Count("pk"))
        .order_by()
    )
    return {row["attention"]: row["count"] for row in rows}


def payment_with_contestant(*, reference: str) -> Payment | None:
    """One payment and its contestant in one query, or None for a reference that is not ours."""
    return Payment.objects.select_related("contestant").filter(reference=reference).first()
