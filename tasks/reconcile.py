"""Reconciliation: ask the gateway about payments still pending, and settle them."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from ledger import services
from ledger.models import Payment
from ledger.selectors import pending_payments
from paystack.errors import GatewayRejected, GatewayUnavailable, ReferenceNotFound
from tasks.verification import count_outcome, settle_verified

logger = logging.getLogger(__name__)


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

    1. List pending payments in the window, the least recently verified first.
    2. Claim each (ledger.services.claim_for_reconcile); one another run claimed is skipped.
    3. Verify and settle it; an unknown reference past its expiry is closed as failed.
    """
    report = ReconcileReport()
    references = list(
        pending_payments(created_before=created_before, created_after=created_after).values_list(
            "reference", flat=True
        )[:limit]
    )
    for reference in references:
        if not services.claim_for_reconcile(reference=reference, now=timezone.now()):
            continue
        report.add(_reconcile_one(reference))
        if on_progress is not None:
            on_progress(report)
    return report


def _reconcile_one(reference: str) -> str:
    try:
        return settle_verified(reference) or "not_ours"
    except ReferenceNotFound:
        payment = Payment.objects.get(reference=reference)
        if services.is_expired(payment):
            reason = "never paid: the gateway has no such transaction"
            settlement = services.expire_payment(reference=reference, reason=reason)
            return count_outcome(settlement.outcome, settlement.payment)
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
