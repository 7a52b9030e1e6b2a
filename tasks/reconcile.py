"""Reconciliation: ask the gateway about payments still open, and settle them."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from ledger import services
from ledger.models import Payment
from ledger.selectors import payments_to_reconcile
from paystack.errors import GatewayRejected, GatewayUnavailable, ReferenceNotFound
from tasks.locks import single_run
from tasks.retry import VerdictPending
from tasks.verification import (
    VerifiedMomentsAgo,
    confirm_reversal,
    count_outcome,
    settle_verified,
)

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    checked: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # verified moments ago by another path, or settled meanwhile
    stopped_early: bool = False  # the time budget ran out; the next run goes on
    references: list[str] = field(default_factory=list)  # the payments it checked

    def add(self, outcome: str, reference: str) -> None:
        self.checked += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.references.append(reference)


def reconcile_payments(
    *,
    created_before: datetime,
    created_after: datetime | None = None,
    limit: int | None = None,
    budget_seconds: float | None = None,
    on_progress: Callable[[ReconcileReport], None] | None = None,
) -> ReconcileReport:
    """Verify and settle open payments: pending ones created in the window, and refunds on
    record that the gateway has not confirmed yet.

    1. List them, the least recently verified first (a run that stops early leaves the rest
       at the front of the next one).
    2. Each asks the gateway only when no other path did within VERIFY_COOLDOWN_SECONDS
       (ledger.services.claim_verify); one that did is skipped.
    3. A charge: verify and settle it; an unknown reference past its expiry is closed failed.
    4. A refund: take the votes back once the gateway confirms it; unconfirmed past the
       expiry, a person is asked to decide.
    5. Stop taking new payments once `budget_seconds` have passed.
    """
    report = ReconcileReport()
    payments = payments_to_reconcile(created_before=created_before, created_after=created_after)
    references = list(payments.values_list("reference", flat=True)[:limit])
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    for reference in references:
        if deadline is not None and time.monotonic() > deadline:
            report.stopped_early = True
            break
        outcome = _reconcile_one(reference)
        if outcome is None:
            report.skipped += 1
            continue
        report.add(outcome, reference)
        if on_progress is not None:
            on_progress(report)
    return report


def _reconcile_one(reference: str) -> str | None:
    """The outcome for one payment; None when another path verified it moments ago."""
    payment = Payment.objects.get(reference=reference)
    try:
        if payment.refund_recorded_at is not None:
            return _reconcile_refund(payment)
        return _reconcile_charge(payment)
    except VerifiedMomentsAgo:
        return None
    except GatewayRejected as exc:
        # A refusal for one payment (e.g. a 401 while a key is being rotated) must not stop the
        # rest of the run; the payment stays open and is tried again next round.
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


def _reconcile_charge(payment: Payment) -> str:
    try:
        return settle_verified(payment.reference) or "not_ours"
    except ReferenceNotFound:
        if services.is_expired(payment):
            reason = "never paid: the gateway has no such transaction"
            settlement = services.expire_payment(reference=payment.reference, reason=reason)
            return count_outcome(settlement.outcome, settlement.payment)
        return "not_found"


def _reconcile_refund(payment: Payment) -> str:
    try:
        return confirm_reversal(payment.reference, reason="refunded") or "not_ours"
    except VerdictPending:
        if services.refund_overdue(payment):
            services.flag_unconfirmed_refund(reference=payment.reference)
            return "refund_flagged"
        return "refund_unconfirmed"


@shared_task(
    name="tally.reconcile_pending_payments",
    acks_late=True,
    soft_time_limit=settings.PERIODIC_BUDGET_SECONDS + 2 * settings.PAYSTACK_TIMEOUT + 10,
    time_limit=settings.PERIODIC_BUDGET_SECONDS + 2 * settings.PAYSTACK_TIMEOUT + 30,
)
def reconcile_pending_payments(limit: int = 500) -> dict[str, int]:
    """Beat: settle payments still open after RECONCILE_AFTER_SECONDS; one run at a time,
    within PERIODIC_BUDGET_SECONDS (the next run goes on where this one stopped)."""
    with single_run("tally.reconcile") as taken:
        if not taken:
            logger.info("reconcile already running elsewhere", extra={"outcome": "skipped"})
            return {}
        cutoff = timezone.now() - timedelta(seconds=settings.RECONCILE_AFTER_SECONDS)
        report = reconcile_payments(
            created_before=cutoff, limit=limit, budget_seconds=settings.PERIODIC_BUDGET_SECONDS
        )
    logger.info(
        "reconcile finished",
        extra={
            "checked": report.checked,
            "skipped": report.skipped,
            "stopped_early": report.stopped_early,
            **report.outcomes,
        },
    )
    return report.outcomes
