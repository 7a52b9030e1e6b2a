"""Shared reads of the ledger."""

from datetime import datetime

from django.db.models import F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from ledger.models import Contest, Contestant, LedgerEntry, Payment


def contestants_out_of_balance() -> QuerySet[Contestant]:
    """Contestants whose total differs from the sum of their ledger entries (should be none)."""
    ledger_total = (
        LedgerEntry.objects.filter(contestant=OuterRef("pk"))
        .values("contestant")
        .annotate(total=Sum("votes"))
        .values("total")
    )
    return (
        Contestant.objects.with_votes()
        .annotate(ledger_votes=Coalesce(Subquery(ledger_total), 0))
        .exclude(votes=F("ledger_votes"))
        .order_by("id")
    )


def pending_payments(
    *, created_before: datetime, created_after: datetime | None = None
) -> QuerySet[Payment]:
    """Pending payments created in the window, the least recently verified first, so payments
    that stay pending for hours (abandoned checkouts) never starve newer ones of a check."""
    window = Q(created_at__lt=created_before)
    if created_after is not None:
        window &= Q(created_at__gte=created_after)
    return Payment.objects.filter(window, status=Payment.Status.PENDING).order_by(
        F("verified_at").asc(nulls_first=True), "created_at"
    )


def open_contest(*, now: datetime) -> Contest | None:
    """The contest open for votes now (the earliest to close, if several are)."""
    return (
        Contest.objects.filter(opens_at__lte=now, closes_at__gt=now).order_by("closes_at").first()
    )


def contestants_of(*, contest: Contest | None) -> QuerySet[Contestant]:
    """A contest's contestants in a stable order (by id); none when there is no contest.

    Taking `None` lets a view pass `open_contest(...)` straight through when voting is closed.
    """
    if contest is None:
        return Contestant.objects.with_votes().none()
    return contest.contestants.with_votes().order_by("id")


def payment_with_contestant(*, reference: str) -> Payment | None:
    """One payment and its contestant in one query, or None for a reference that is not ours."""
    return Payment.objects.select_related("contestant").filter(reference=reference).first()
