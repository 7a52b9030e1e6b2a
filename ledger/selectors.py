"""Shared reads of the ledger."""

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, cast

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from ledger import merkle
from ledger.models import (
    Certification,
    Contest,
    Contestant,
    ContestantVotes,
    Dispute,
    LedgerEntry,
    Payment,
)

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
    """One payment, its contestant and contest in one query, or None for a reference that is
    not ours."""
    return Payment.objects.select_related("contestant__contest").filter(reference=reference).first()


# --- contests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListedContest:
    contest: Contest
    status: Contest.Status


def _with_certified() -> QuerySet[Contest]:
    return Contest.objects.annotate(
        is_certified=Exists(Certification.objects.filter(contest=OuterRef("pk")))
    )


def _listed(contest: Contest, now: datetime) -> ListedContest:
    certified = bool(getattr(contest, "is_certified", False))
    return ListedContest(contest=contest, status=contest.status_at(now, certified=certified))


def listed_contests(*, now: datetime) -> list[ListedContest]:
    """Every contest with its status: open ones first (closing soonest first), then upcoming
    ones (opening soonest first), then closed and certified ones (the latest to close first)."""
    return sorted((_listed(contest, now) for contest in _with_certified()), key=_listing_order)


def _listing_order(item: ListedContest) -> tuple[int, float, int]:
    contest = item.contest
    if item.status == Contest.Status.OPEN:
        return 0, contest.closes_at.timestamp(), contest.pk
    if item.status == Contest.Status.UPCOMING:
        return 1, contest.opens_at.timestamp(), contest.pk
    return 2, -contest.closes_at.timestamp(), contest.pk


def contest_by_slug(*, slug: str, now: datetime) -> ListedContest | None:
    contest = _with_certified().filter(slug=slug).first()
    return None if contest is None else _listed(contest, now)


# --- certified results ------------------------------------------------------------------------


def entries_of(*, contest: Contest) -> QuerySet[LedgerEntry]:
    """The contest's ledger entries (the (contestant, id) index serves an id range)."""
    return LedgerEntry.objects.filter(contestant__contest_id=contest.pk)


def latest_certification(*, contest: Contest) -> Certification | None:
    return contest.certifications.order_by("-number").first()


def certifications_of(*, contest: Contest) -> list[Certification]:
    """The certification and its amendments, in order, each with its totals and contestants."""
    return list(contest.certifications.order_by("number").prefetch_related("totals__contestant"))


def has_entries_between(*, contest: Contest, after: int, up_to: int | None = None) -> bool:
    """Whether the contest has ledger entries with `after` < id (<= `up_to`)."""
    entries = entries_of(contest=contest).filter(id__gt=after)
    if up_to is not None:
        entries = entries.filter(id__lte=up_to)
    return entries.exists()


def contests_to_certify(*, closed_before: datetime) -> QuerySet[Contest]:
    """Contests the certify job acts on, the earliest to close first: closed at or before
    `closed_before` and not certified yet, and certified ones with ledger entries past their
    latest certification's horizon (an amendment is due)."""
    latest_horizon = Certification.objects.filter(contest=OuterRef("pk")).order_by("-number")
    amendment_due = Exists(
        LedgerEntry.objects.filter(
            contestant__contest_id=OuterRef("pk"), id__gt=OuterRef("latest_horizon")
        )
    )
    return (
        Contest.objects.annotate(latest_horizon=Subquery(latest_horizon.values("horizon")[:1]))
        .filter(
            Q(latest_horizon__isnull=True, closes_at__lte=closed_before)
            | Q(latest_horizon__isnull=False) & amendment_due
        )
        .order_by("closes_at", "id")
    )


def flagged_by_reason(*, contest: Contest) -> dict[str, int]:
    """{attention reason: flagged payments} for the contest now."""
    rows = (
        Payment.objects.filter(contestant__contest=contest, status=Payment.Status.FLAGGED)
        .values("attention")
        .annotate(count=Count("pk"))
        .order_by("attention")
    )
    return {row["attention"]: row["count"] for row in rows}


@dataclass
class LedgerResult:
    """A contest's result recomputed from its ledger entries up to `horizon`."""

    horizon: int
    chunk_size: int
    entries: int = 0
    votes: dict[int, int] = field(default_factory=dict)  # contestant id → total
    under_dispute: dict[int, int] = field(default_factory=dict)  # of it, on open chargebacks
    chunk_roots: list[bytes] = field(default_factory=list)
    chunk_starts: list[int] = field(default_factory=list)

    @property
    def root(self) -> bytes:
        return merkle.root_of(self.chunk_roots)


# (id, payment id, reference, kind, votes, contestant id) of one ledger entry.
EntryRow = tuple[int, int, str, str, int, int]
_ENTRY_ROW = ("id", "payment_id", "payment__reference", "kind", "votes", "contestant_id")


def leaf_of(row: EntryRow) -> bytes:
    _, _, reference, kind, votes, contestant = row
    return merkle.leaf_hash(
        merkle.entry_bytes(reference=reference, kind=kind, votes=votes, contestant=contestant)
    )


def _covered_rows(contest: Contest, *, low: int = 0, high: int) -> Iterator[EntryRow]:
    rows = (
        entries_of(contest=contest)
        .filter(id__gt=low, id__lte=high)
        .order_by("id")
        .values_list(*_ENTRY_ROW)
    )
    return cast(Iterator[EntryRow], rows.iterator(chunk_size=2000))


def ledger_result(*, contest: Contest, horizon: int, chunk_size: int) -> LedgerResult:
    """Totals, votes under dispute (chargebacks open now) and the Merkle tree's blocks over
    the contest's entries with id <= horizon, in id order. One pass; memory holds one block."""
    result = LedgerResult(horizon=horizon, chunk_size=chunk_size)
    for contestant_id in Contestant.objects.filter(contest=contest).values_list("pk", flat=True):
        result.votes[contestant_id] = result.under_dispute[contestant_id] = 0
    disputed = set(
        Dispute.objects.filter(
            payment__contestant__contest=contest, status=Dispute.Status.OPEN
        ).values_list("payment_id", flat=True)
    )
    block: list[bytes] = []
    for row in _covered_rows(contest, high=horizon):
        entry_id, payment_id, _, _, votes, contestant_id = row
        result.entries += 1
        result.votes[contestant_id] += votes
        if payment_id in disputed:
            result.under_dispute[contestant_id] += votes
        if not block:
            result.chunk_starts.append(entry_id)
        block.append(leaf_of(row))
        if len(block) == chunk_size:
            result.chunk_roots.append(merkle.root_of(block))
            block = []
    if block:
        result.chunk_roots.append(merkle.root_of(block))
    return result


def result_differences(*, certification: Certification) -> list[str]:
    """What differs between a certification and its contest's ledger now, worded for an
    operator; empty when the ledger still gives the certified result and nothing came since.

    Recomputed: the covered entries, their root and each contestant's total. Compared with the
    vote shards: each contestant's live total, once no entry came after the certification.
    Votes under dispute and flagged payments are a record of that moment, not recomputed.
    """
    contest = certification.contest
    recomputed = ledger_result(
        contest=contest, horizon=certification.horizon, chunk_size=certification.chunk_size
    )
    differences = []
    if recomputed.entries != certification.entries:
        differences.append(
            f"entries: certified {certification.entries}, ledger {recomputed.entries}"
        )
    if recomputed.root.hex() != certification.root:
        differences.append(f"root: certified {certification.root}, ledger {recomputed.root.hex()}")
    certified = {line.contestant_id: line for line in certification.totals.all()}
    live = dict(Contestant.objects.with_votes().filter(contest=contest).values_list("pk", "votes"))
    later = entries_of(contest=contest).filter(id__gt=certification.horizon).count()
    if later:
        differences.append(
            f"{later} ledger entr{'y' if later == 1 else 'ies'} after {certification}: "
            "an amendment is due "
            f"(beat writes it, or certify_contest {contest.slug})"
        )
    for contestant in Contestant.objects.filter(contest=contest).order_by("id"):
        line = certified.get(contestant.pk)
        name = f"contestant {contestant.pk} ({contestant.name})"
        votes = 0 if line is None else line.votes  # added since: certified with none
        if votes != recomputed.votes[contestant.pk]:
            differences.append(
                f"{name}: certified {votes}, ledger {recomputed.votes[contestant.pk]}"
            )
        elif not later and votes != live[contestant.pk]:
            differences.append(f"{name}: certified {votes}, live total {live[contestant.pk]}")
    return differences


@dataclass(frozen=True)
class ProvenEntry:
    """One of a payment's ledger entries, with its place in a certification's tree."""

    reference: str
    kind: str
    votes: int
    contestant_id: int
    index: int  # the leaf's position, 0 first, in id order
    leaf: bytes
    path: list[merkle.Step]


@dataclass(frozen=True)
class Receipt:
    certification: Certification | None  # the latest; None: not certified yet
    proven: list[ProvenEntry]
    uncovered: int  # the payment's entries after it (in the next amendment)


def receipt_of(*, payment: Payment) -> Receipt:
    """The payment's ledger entries with their Merkle paths to the latest certification's
    root. A path costs one block of entries (Certification.chunk_size), not the contest."""
    contest = payment.contestant.contest
    certification = latest_certification(contest=contest)
    entries = list(payment.ledger_entries.order_by("id").values_list("pk", flat=True))
    if certification is None:
        return Receipt(certification=None, proven=[], uncovered=len(entries))
    covered = [entry_id for entry_id in entries if entry_id <= certification.horizon]
    proven = [_prove(certification, contest, entry_id) for entry_id in covered]
    return Receipt(certification, proven, uncovered=len(entries) - len(covered))


def chunk_roots_of(certification: Certification) -> list[bytes]:
    stored = bytes(certification.chunk_roots)
    return [stored[at : at + 32] for at in range(0, len(stored), 32)]


def _prove(certification: Certification, contest: Contest, entry_id: int) -> ProvenEntry:
    starts = certification.chunk_starts
    block = bisect_right(starts, entry_id) - 1
    high = starts[block + 1] - 1 if block + 1 < len(starts) else certification.horizon
    rows = list(_covered_rows(contest, low=starts[block] - 1, high=high))
    position = [row[0] for row in rows].index(entry_id)
    leaves = [leaf_of(row) for row in rows]
    path = merkle.path_of(leaves, position) + merkle.path_of(chunk_roots_of(certification), block)
    _, _, reference, kind, votes, contestant_id = rows[position]
    return ProvenEntry(
        reference=reference,
        kind=kind,
        votes=votes,
        contestant_id=contestant_id,
        index=block * certification.chunk_size + position,
        leaf=leaves[position],
        path=path,
    )
