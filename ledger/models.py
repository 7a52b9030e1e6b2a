"""Contests, contestants, payments and the ledger. PostgreSQL constraints hold the invariants."""

from datetime import datetime
from typing import TYPE_CHECKING, TypedDict, cast

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce, Lower

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

# The most votes one payment buys (the JSON API's limit).
MAX_VOTES_PER_PAYMENT = 1000
# Payment.amount is a BIGINT: the price of the largest order must fit in one, or buying it
# would fail in PostgreSQL (a 500) instead of being refused when the contest is set up.
MAX_PRICE_PER_VOTE = (2**63 - 1) // MAX_VOTES_PER_PAYMENT


class Contest(models.Model):
    class Status(models.TextChoices):
        """Where a contest stands (docs/contract.md, contests); derived, never stored."""

        UPCOMING = "upcoming"
        OPEN = "open"
        CLOSED = "closed"  # voting is over; the result is not certified yet
        CERTIFIED = "certified"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    price_per_vote = models.BigIntegerField(
        help_text="Minor units, e.g. kobo.",
        validators=[MinValueValidator(1), MaxValueValidator(MAX_PRICE_PER_VOTE)],
    )
    currency = models.CharField(max_length=3, default="NGN")
    opens_at = models.DateTimeField()
    closes_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(price_per_vote__gt=0), name="contest_price_positive"
            ),
            models.CheckConstraint(
                condition=Q(price_per_vote__lte=MAX_PRICE_PER_VOTE),
                name="contest_price_fits_largest_order",
                violation_error_message=(
                    f"price_per_vote times {MAX_VOTES_PER_PAYMENT} votes must fit a 64-bit amount"
                ),
            ),
            models.CheckConstraint(
                condition=Q(closes_at__gt=models.F("opens_at")), name="contest_closes_after_opening"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def status_at(self, now: datetime, *, certified: bool) -> "Contest.Status":
        """The status at `now`; `certified`: the contest has a Certification."""
        if certified:
            return Contest.Status.CERTIFIED
        if now < self.opens_at:
            return Contest.Status.UPCOMING
        if now < self.closes_at:
            return Contest.Status.OPEN
        return Contest.Status.CLOSED


class ContestantVotes(TypedDict):
    """What `with_votes()` adds to each contestant."""

    votes: int


class ContestantQuerySet(models.QuerySet["Contestant"]):
    def with_votes(self) -> "models.QuerySet[WithAnnotations[Contestant, ContestantVotes]]":
        """Annotate each contestant's total: the sum of its vote shards."""
        total = (
            VoteShard.objects.filter(contestant=OuterRef("pk"))
            .values("contestant")
            .annotate(total=Sum("votes"))
            .values("total")
        )
        # Coalesce(..., 0) is an int, but the type checker types every annotate() value as Any.
        return cast(
            "models.QuerySet[WithAnnotations[Contestant, ContestantVotes]]",
            self.annotate(votes=Coalesce(Subquery(total), 0)),
        )


class Contestant(models.Model):
    contest = models.ForeignKey(Contest, on_delete=models.PROTECT, related_name="contestants")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)

    objects = ContestantQuerySet.as_manager()

    class Meta:
        ordering = ["contest_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["contest", "slug"], name="contestant_slug_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class VoteShard(models.Model):
    """One of the counter rows a contestant's total is split over.

    A credit adds to the shard picked by its payment id, so concurrent credits for one popular
    contestant update different rows instead of queueing on one row lock; the total is the sum
    of the shards (`Contestant.objects.with_votes()`). A reversal takes the votes back from the
    same shard, so no shard ever goes below zero.
    """

    SHARDS = 16

    contestant = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="vote_shards")
    shard = models.SmallIntegerField()
    votes = models.BigIntegerField(default=0, help_text="Moved only with F() by ledger.services.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contestant", "shard"], name="vote_shard_unique"),
            models.CheckConstraint(
                condition=Q(shard__gte=0, shard__lt=16), name="vote_shard_in_range"
            ),
            models.CheckConstraint(condition=Q(votes__gte=0), name="vote_shard_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.contestant_id}/{self.shard}: {self.votes}"

    @classmethod
    def shard_of(cls, payment_id: int) -> int:
        return payment_id % cls.SHARDS


class Payment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        CREDITED = "credited"
        FAILED = "failed"
        FLAGGED = "flagged"
        REVERSED = "reversed"

    class Attention(models.TextChoices):
        """Why a person must look at the payment; empty when nobody needs to."""

        NONE = "", "none"
        MISMATCH = "mismatch", "amount, currency or reference differ from ours"
        PAID_AFTER_CLOSE = "paid_after_close", "paid after voting closed: refund"
        REFUND_UNCONFIRMED = "refund_unconfirmed", "a refund the gateway does not confirm"
        REFUND_NEEDS_ATTENTION = (
            "refund_needs_attention",
            "the gateway says a refund needs attention",
        )

    reference = models.CharField(max_length=64, unique=True)
    contestant = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="payments")
    votes = models.IntegerField()
    amount = models.BigIntegerField(help_text="Minor units, e.g. kobo.")
    currency = models.CharField(max_length=3)
    email = models.EmailField()
    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING)
    # NUMERIC(20): Paystack's ids are unsigned 64-bit, past what a signed BIGINT holds.
    gateway_id = models.DecimalField(
        max_digits=20, decimal_places=0, null=True, blank=True, help_text="Paystack's id."
    )
    paid_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    credited_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why it is flagged, failed or reversed.")
    attention = models.CharField(max_length=32, choices=Attention, default="", blank=True)
    # Set while a refund is recorded and not failed: the payment is then never credited.
    refund_recorded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "created_at"], name="payment_status_created"),
            models.Index(
                fields=["attention"], condition=~Q(attention=""), name="payment_needs_attention"
            ),
            models.Index(
                fields=["refund_recorded_at"],
                condition=Q(refund_recorded_at__isnull=False),
                name="payment_refund_recorded",
            ),
            # Open payments per email, counted before each checkout (voting/checkout.py).
            models.Index(
                Lower("email"), condition=Q(status="pending"), name="payment_pending_email"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(votes__gt=0), name="payment_votes_positive"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "credited", "failed", "flagged", "reversed"]),
                name="payment_status_valid",
            ),
            # A credited payment always says when; nothing else may claim a credit time.
            models.CheckConstraint(
                condition=Q(status="credited", credited_at__isnull=False) | ~Q(status="credited"),
                name="payment_credited_has_time",
            ),
            # A flagged payment always says why a person must look.
            models.CheckConstraint(
                condition=~Q(status="flagged") | ~Q(attention=""),
                name="payment_flagged_has_attention",
            ),
        ]

    def __str__(self) -> str:
        return self.reference


class Refund(models.Model):
    """A refund the gateway told us about, recorded the moment its event arrives.

    Refund events carry no id of their own until `refund.processed` (`refund_reference`), so a
    row starts without one and takes it when an event brings it.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        PROCESSED = "processed"
        FAILED = "failed"
        NEEDS_ATTENTION = "needs-attention"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    refund_reference = models.CharField(max_length=64, blank=True)
    amount = models.BigIntegerField(null=True, blank=True, help_text="Minor units, as reported.")
    currency = models.CharField(max_length=3, blank=True)
    status = models.CharField(max_length=16, choices=Status)
    recorded_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    confirmed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the gateway confirmed the money went back."
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["payment", "refund_reference"],
                condition=~Q(refund_reference=""),
                name="refund_reference_once_per_payment",
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=["pending", "processing", "processed", "failed", "needs-attention"]
                ),
                name="refund_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"refund {self.refund_reference or '(no reference yet)'} {self.status}"


class Dispute(models.Model):
    """A chargeback: open while the card holder's bank decides; the votes stay counted until
    the gateway reports the charge reversed."""

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    class Outcome(models.TextChoices):
        UNDECIDED = "", "undecided"
        VOTES_STAND = "votes_stand", "resolved; the charge stands and so do the votes"
        REVERSED = "reversed", "lost; the charge was reversed and the votes taken back"

    gateway_id = models.CharField(max_length=64, unique=True, help_text="Paystack's dispute id.")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    status = models.CharField(max_length=16, choices=Status, default=Status.OPEN)
    resolution = models.CharField(
        max_length=64, blank=True, help_text="The gateway's word, e.g. merchant-accepted."
    )
    outcome = models.CharField(max_length=16, choices=Outcome, default="", blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["payment"], condition=Q(status="open"), name="dispute_open"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["open", "resolved"]), name="dispute_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"dispute {self.gateway_id} ({self.status})"


class PaymentTransition(models.Model):
    """The status history of a payment, written by the service that changes the status."""

    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=16)
    to_status = models.CharField(max_length=16)
    reason = models.TextField(blank=True)
    actor = models.CharField(
        max_length=150, blank=True, help_text="Who decided, when a person did; empty: tally."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_status} -> {self.to_status}"


class LedgerEntry(models.Model):
    class Kind(models.TextChoices):
        CREDIT = "credit"
        REVERSAL = "reversal"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="ledger_entries")
    # Indexed together with the id below (not alone): one index per insert, as before, which
    # also finds a certified contest's entries past its horizon without reading the others.
    contestant = models.ForeignKey(
        Contestant, on_delete=models.PROTECT, related_name="ledger_entries", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind)
    votes = models.IntegerField(help_text="Signed: positive for a credit, negative for a reversal.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["contestant", "id"], name="ledger_entry_contestant_id")]
        constraints = [
            # The second wall: even code that skipped the row lock cannot credit twice.
            models.UniqueConstraint(fields=["payment", "kind"], name="ledger_entry_once_per_kind"),
            models.CheckConstraint(
                condition=Q(kind="credit", votes__gt=0) | Q(kind="reversal", votes__lt=0),
                name="ledger_entry_sign_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.votes:+d} for {self.payment_id}"


class OperatorAction(models.Model):
    """One thing a person (or beat, for its daily jobs) did to the money or the deliveries:
    a replay, a reconcile, an audit, a decision, a certification, a prune. Written before the
    work starts and completed after, so a crash leaves a visible unfinished row. Append-only.
    """

    class Outcome(models.TextChoices):
        RUNNING = "running"  # started, not finished: still running, or it crashed
        DONE = "done"
        FAILED = "failed"

    class Via(models.TextChoices):
        ADMIN = "admin"
        COMMAND = "command"
        BEAT = "beat"

    action = models.CharField(max_length=64, db_index=True)
    actor = models.CharField(max_length=150, db_index=True, help_text="Who: a user or beat.")
    via = models.CharField(max_length=16, choices=Via)
    arguments = models.JSONField(default=dict, blank=True)
    dry_run = models.BooleanField(default=False)
    counts = models.JSONField(default=dict, blank=True, help_text="What it did, by outcome.")
    outcome = models.CharField(max_length=16, choices=Outcome, default=Outcome.RUNNING)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # What it touched, so a payment's or a delivery's page can list the actions on it.
    payment_references = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    delivery_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            GinIndex(fields=["payment_references"], name="operator_action_payments"),
            GinIndex(fields=["delivery_ids"], name="operator_action_deliveries"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=["running", "done", "failed"]),
                name="operator_action_outcome_valid",
            ),
            models.CheckConstraint(
                condition=Q(outcome="running") | Q(finished_at__isnull=False),
                name="operator_action_finished_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor} ({self.outcome})"


class Certification(models.Model):
    """A contest's frozen result: number 0 certifies it, 1, 2, … amend it.

    It covers the contest's ledger entries with an id up to `horizon`, in id order, and no
    other: the horizon is taken while no ledger write is in flight (ledger.services), so no
    entry at or below it can appear later. An entry past it is a change after certification
    and makes an amendment, itself a whole result with its own root; earlier rows stay as they
    were published. docs/results.md describes the root and how to check it.
    """

    contest = models.ForeignKey(Contest, on_delete=models.PROTECT, related_name="certifications")
    number = models.IntegerField(help_text="0: the certification; 1, 2, …: amendments.")
    root = models.CharField(max_length=64, help_text="SHA-256 Merkle root, lowercase hex.")
    entries = models.IntegerField(help_text="Ledger entries covered.")
    horizon = models.BigIntegerField(help_text="Covers the contest's entries with id <= this.")
    # The tree's level where blocks of `chunk_size` leaves end, kept so that a receipt's proof
    # costs one block of entries instead of the whole contest (ledger.selectors.receipt_of).
    chunk_size = models.IntegerField(help_text="Leaves per stored block; a power of two.")
    chunk_roots = models.BinaryField(help_text="The blocks' roots, 32 bytes each, in order.")
    chunk_starts = ArrayField(
        models.BigIntegerField(), default=list, help_text="Each block's first entry id."
    )
    flagged = models.JSONField(
        default=dict, help_text="Flagged payments of the contest then, by reason: {reason: n}."
    )
    reason = models.TextField(blank=True, help_text="What an amendment changes.")
    actor = models.CharField(
        max_length=150, blank=True, help_text="Who certified, when a person did; empty: beat."
    )
    certified_at = models.DateTimeField()

    class Meta:
        ordering = ["contest_id", "number"]
        constraints = [
            # One certification per contest, amendments numbered without gaps taken twice.
            models.UniqueConstraint(fields=["contest", "number"], name="certification_number_once"),
            models.CheckConstraint(condition=Q(number__gte=0), name="certification_number_valid"),
            models.CheckConstraint(
                condition=Q(root__regex=r"^[0-9a-f]{64}$"), name="certification_root_is_sha256"
            ),
            models.CheckConstraint(
                condition=Q(entries__gte=0, horizon__gte=0), name="certification_counts_valid"
            ),
            models.CheckConstraint(
                condition=Q(chunk_size__gte=1), name="certification_chunk_size_positive"
            ),
            # An amendment says what it changes.
            models.CheckConstraint(
                condition=Q(number=0) | ~Q(reason=""), name="certification_amendment_has_reason"
            ),
        ]

    def __str__(self) -> str:
        kind = "certification" if self.number == 0 else f"amendment {self.number}"
        return f"{self.contest} {kind}"

    @property
    def is_amendment(self) -> bool:
        return self.number > 0


class CertifiedTotal(models.Model):
    """One contestant's line in a certification: its total from the covered entries."""

    certification = models.ForeignKey(
        Certification, on_delete=models.PROTECT, related_name="totals"
    )
    contestant = models.ForeignKey(
        Contestant, on_delete=models.PROTECT, related_name="certified_totals"
    )
    votes = models.BigIntegerField()
    votes_under_dispute = models.BigIntegerField(
        help_text="Of `votes`, those whose payment had an open chargeback then."
    )

    class Meta:
        ordering = ["certification_id", "contestant_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["certification", "contestant"], name="certified_total_once"
            ),
            models.CheckConstraint(
                condition=Q(votes__gte=0, votes_under_dispute__gte=0)
                & Q(votes_under_dispute__lte=models.F("votes")),
                name="certified_total_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contestant}: {self.votes}"
