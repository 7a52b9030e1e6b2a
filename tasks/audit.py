"""The gateway audit: page through Paystack's transaction list and bring ours in line.

Webhooks can be lost for good (a refund done in the dashboard whose event never came, a
payment completed after we closed it). The list finds the candidates; verify settles them,
through the same services as every other path, so the audit can never double anything.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.utils import timezone

from ledger import services
from ledger.models import Payment
from ledger.operator_log import Record, recorded_by_beat
from paystack.client import gateway
from paystack.errors import GatewayError
from paystack.types import Verification
from tasks.locks import single_run
from tasks.retry import VerdictPending
from tasks.verification import confirm_reversal, settle_verified

logger = logging.getLogger(__name__)

# The list filters on when a transaction was created, not when it was refunded, so the daily
# run looks for reversals over the last month (few pages: the gateway filters by status) and for
# payments completed after we closed them over the last three days (a payment expires a day
# after it is created).
DAILY_REVERSALS_WINDOW = timedelta(days=30)
DAILY_PAYMENTS_WINDOW = timedelta(days=3)


class AuditRunning(Exception):
    """Another audit holds the lock; this one did nothing."""


@dataclass
class AuditReport:
    listed: int = 0  # transactions the gateway listed in the window
    ours: int = 0  # of them, references we know
    outcomes: dict[str, int] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)  # references it reversed or settled

    def add(self, outcome: str, reference: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome != "agrees":
            self.changed.append(reference)


def audit_gateway(
    *,
    since: datetime,
    paid_since: datetime | None = None,
    dry_run: bool = False,
    on_progress: Callable[[AuditReport], None] | None = None,
) -> AuditReport:
    """Compare the gateway's transactions with ours and settle the differences.

    1. Take the audit lock; another run holding it raises AuditRunning.
    2. Page through the gateway's reversed transactions created since `since`, then its paid
       ones created since `paid_since` (default `since`); the client dedupes on id across
       shifting pages.
    3. For each of ours: reversed there but counted here → verify, take the votes back once;
       paid there but pending or failed here → verify, settle. Anything else agrees.
    With `dry_run`, say what would be done; verify nothing, change nothing.
    """
    report = AuditReport()
    with single_run("tally.audit_gateway") as taken:
        if not taken:
            raise AuditRunning("another audit_gateway run is in progress")
        for status, start in (("reversed", since), ("success", paid_since or since)):
            for listed in gateway().list_transactions(since=start, status=status):
                report.listed += 1
                outcome = _audit_one(listed, dry_run=dry_run)
                if outcome is not None:
                    report.ours += 1
                    report.add(outcome, listed.reference)
                if on_progress is not None:
                    on_progress(report)
    return report


def _audit_one(listed: Verification, *, dry_run: bool) -> str | None:
    status = Payment.objects.filter(reference=listed.reference).values_list("status", flat=True)
    ours = status.first()
    if ours is None:
        return None
    if listed.status == "reversed" and ours in services.AWAITING_REVERSAL:
        return "would_reverse" if dry_run else _reverse(listed.reference)
    if listed.status == "success" and ours in services.AWAITING_SETTLEMENT:
        return "would_settle" if dry_run else _settle(listed.reference)
    return "agrees"


def _reverse(reference: str) -> str:
    try:
        outcome = confirm_reversal(reference, reason="reversed at the gateway (found by audit)")
    except VerdictPending:
        return "verify_disagrees"  # the list and verify differ for now; the next audit looks again
    except GatewayError as exc:
        return _gateway_error(reference, exc)
    logger.warning("audit found a reversal", extra={"reference": reference, "outcome": outcome})
    return f"reversal_{outcome}"


def _settle(reference: str) -> str:
    try:
        outcome = settle_verified(reference) or "not_ours"
    except GatewayError as exc:
        return _gateway_error(reference, exc)
    logger.warning("audit found a payment", extra={"reference": reference, "outcome": outcome})
    return f"payment_{outcome}"


def _gateway_error(reference: str, error: GatewayError) -> str:
    logger.warning("audit could not verify", extra={"reference": reference, "error": str(error)})
    return "verify_failed"


def note_audit(record: Record, report: AuditReport) -> None:
    """Tell the operator log what an audit found and changed."""
    record.count({"listed": report.listed, "ours": report.ours, **report.outcomes})
    record.touched(payments=report.changed)


@shared_task(name="tally.audit_gateway", acks_late=True)
def audit_gateway_daily() -> dict[str, int]:
    """Beat, daily: reversals of the last month, late payments of the last three days."""
    now = timezone.now()
    since, paid_since = now - DAILY_REVERSALS_WINDOW, now - DAILY_PAYMENTS_WINDOW
    try:
        with recorded_by_beat(
            "audit_gateway", {"since": since.isoformat(), "paid_since": paid_since.isoformat()}
        ) as record:
            report = audit_gateway(since=since, paid_since=paid_since)
            note_audit(record, report)
    except AuditRunning:
        logger.info("audit already running elsewhere", extra={"outcome": "skipped"})
        return {}
    logger.info(
        "audit finished", extra={"listed": report.listed, "ours": report.ours, **report.outcomes}
    )
    return report.outcomes
