"""Verify a payment with the gateway, then settle it through ledger.services."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.celery_app import VERIFY_PAYMENT_TASK
from config.metrics import payments_settled, votes_credited, votes_reversed
from ledger import services
from ledger.models import Payment
from ledger.paystack import GatewayRejected, GatewayUnavailable, ReferenceNotFound, gateway
from ledger.selectors import pending_payments

logger = logging.getLogger(__name__)


Recorder = Callable[[str], None]


def settle_verified(reference: str, *, record: Recorder | None = None) -> str | None:
    """Verify a reference (outside any lock) and settle it. None if the reference is not ours."""
    return _verify_then_apply(
        reference, services.settle_payment, open_statuses=(Payment.Status.PENDING,), record=record
    )


def reverse_verified(reference: str, *, record: Recorder | None = None) -> str | None:
    """Verify a refunded reference and take its votes back once. None if it is not ours."""
    return _verify_then_apply(
        reference,
        services.reverse_payment,
        open_statuses=(Payment.Status.PENDING, Payment.Status.CREDITED),
        record=record,
    )


def _verify_then_apply(
    reference: str,
    apply: Callable[..., services.Settlement],
    *,
    open_statuses: tuple[str, ...],
    record: Recorder | None,
) -> str | None:
    """Ask the gateway, then apply its answer; `record(outcome)` runs in the same transaction.

    A payment already settled is not verified again: a second delivery, the callback or a
    replay costs one SELECT, not a gateway call.
    """
    status = _status_of(reference)
    if status is None:
        return None
    if status not in open_statuses:
        outcome = _count(services.Outcome.ALREADY_SETTLED, None)
        if record is not None:
            record(outcome)
        return outcome
    verification = gateway().verify(reference)
    # The caller's record (a delivery marked processed) commits with the credit, or not at all,
    # and the two share one commit.
    with transaction.atomic():
        settlement = apply(reference=reference, verification=verification)
        if record is not None:
            record(settlement.outcome.value)
    return _count(settlement.outcome, settlement.payment)


def _status_of(reference: str) -> str | None:
    return Payment.objects.filter(reference=reference).values_list("status", flat=True).first()


def _count(outcome: services.Outcome, payment: Payment | None) -> str:
    payments_settled.labels(outcome.value).inc()
    if payment is not None and outcome == services.Outcome.CREDITED:
        votes_credited.inc(payment.votes)
    elif payment is not None and outcome == services.Outcome.REVERSED:
        votes_reversed.inc(payment.votes)
    return outcome.value


@shared_task(
    name=VERIFY_PAYMENT_TASK,
    acks_late=True,
    autoretry_for=(GatewayUnavailable,),
    retry_backoff=2,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=settings.PAYSTACK_TIMEOUT + 20,
    time_limit=settings.PAYSTACK_TIMEOUT + 40,
)
def verify_payment(reference: str) -> str | None:
    """The callback's work: the same verify-and-settle as a charge.success delivery."""
    try:
        outcome = settle_verified(reference)
    except ReferenceNotFound:
        outcome = "not_found"  # not paid yet; reconciliation looks again later
    logger.info("payment verified", extra={"reference": reference, "outcome": outcome})
    return outcome


@dataclass
class ReconcileReport:
    checked: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str) -> None:
        self.checked += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def reconcile_payments(
    *,
    created_before: datetime,
    created_after: datetime | None = None,
    limit: int | None = None,
    on_progress: Callable[[ReconcileReport], None] | None = None,
) -> ReconcileReport:
    """Verify and settle pending payments created in the window.

    Each payment is claimed first by stamping verified_at with a conditional UPDATE, so two
    reconcile runs at once (two beat replicas, or the command beside beat) never verify the
    same payment twice in one round.
    """
    report = ReconcileReport()
    references = list(
        pending_payments(created_before=created_before, created_after=created_after).values_list(
            "reference", flat=True
        )[:limit]
    )
    for reference in references:
        if not _claim_for_reconcile(reference):
            continue
        report.add(_reconcile_one(reference))
        if on_progress is not None:
            on_progress(report)
    return report


def recently_verified_since(now: datetime) -> datetime:
    """A pending payment verified after this is skipped by reconciliation: another run (a
    second beat, or the command beside beat) asked the gateway about it moments ago."""
    return now - timedelta(seconds=min(settings.RECONCILE_AFTER_SECONDS, 60))


def _claim_for_reconcile(reference: str) -> bool:
    now = timezone.now()
    recently = recently_verified_since(now)
    return bool(
        Payment.objects.filter(
            Q(verified_at__isnull=True) | Q(verified_at__lt=recently),
            reference=reference,
            status=Payment.Status.PENDING,
        ).update(verified_at=now)
    )


def _reconcile_one(reference: str) -> str:
    try:
        return settle_verified(reference) or "not_ours"
    except ReferenceNotFound:
        payment = Payment.objects.get(reference=reference)
        if services.is_expired(payment):
            reason = "never paid: the gateway has no such transaction"
            settlement = services.expire_payment(reference=reference, reason=reason)
            return _count(settlement.outcome, settlement.payment)
        return "not_found"
    except GatewayRejected as exc:
        # A refusal for one payment (e.g. a 401 while a key is being rotated) must not stop the
        # rest of the run; the payment stays pending and is tried again next round.
        logger.error(
            "gateway refused the verify call",
            extra={"reference": reference, "outcome": "rejected", "error": str(exc)},
        )
        return "rejected"
    except GatewayUnavailable as exc:
        logger.warning(
            "gateway unavailable",
            extra={"reference": reference, "outcome": "gateway_unavailable", "error": str(exc)},
        )
        return "gateway_unavailable"


@shared_task(name="tally.reconcile_pending_payments", acks_late=True)
def reconcile_pending_payments(limit: int = 500) -> dict[str, int]:
    """Beat: settle payments still pending after RECONCILE_AFTER_SECONDS."""
    cutoff = timezone.now() - timedelta(seconds=settings.RECONCILE_AFTER_SECONDS)
    report = reconcile_payments(created_before=cutoff, limit=limit)
    logger.info("reconcile finished", extra={"checked": report.checked, **report.outcomes})
    return report.outcomes
