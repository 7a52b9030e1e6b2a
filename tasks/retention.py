"""Retention: the delivery log and payers' emails do not keep personal data forever.

Finished deliveries older than DELIVERY_RETENTION_DAYS lose their raw body and payload (the
row, its dedup key, event, reference, status and outcome stay, so a late duplicate is still
recognised); payers' emails older than PAYER_EMAIL_RETENTION_DAYS are replaced by a hash.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from ledger import services
from ledger.operator_log import Record, recorded_by_beat
from tasks.locks import single_run
from webhooks.models import Delivery

logger = logging.getLogger(__name__)

BATCH = 1000  # rows a statement: short locks, progress to show


class PruneRunning(Exception):
    """Another prune holds the lock; this one did nothing."""


@dataclass
class PruneReport:
    deliveries: int = 0  # pruned (or, in a dry run, that would be)
    emails: int = 0  # replaced by a hash (or would be)
    stopped_early: bool = False


def prune(
    *,
    deliveries_before: datetime,
    emails_before: datetime,
    dry_run: bool = False,
    budget_seconds: float | None = None,
    on_progress: Callable[[PruneReport], None] | None = None,
) -> PruneReport:
    """Prune in batches, one run at a time.

    1. Take the prune lock; another run holding it raises PruneRunning.
    2. Drop bodies of finished deliveries received before `deliveries_before`, a batch at a
       time (a dry run counts them).
    3. Replace payers' emails of payments created before `emails_before` by their hash.
    4. Stop taking new batches once `budget_seconds` have passed; a second run goes on.
    """
    report = PruneReport()
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    with single_run("tally.prune") as taken:
        if not taken:
            raise PruneRunning("another prune_deliveries run is in progress")
        if dry_run:
            report.deliveries = Delivery.objects.filter(
                status__in=Delivery.FINISHED, received_at__lt=deliveries_before, pruned_at=None
            ).count()
            report.emails = services.payer_emails_to_forget(created_before=emails_before)
            return report
        steps: list[tuple[str, Callable[[], int]]] = [
            (
                "deliveries",
                lambda: Delivery.objects.prune_bodies(
                    received_before=deliveries_before, limit=BATCH
                ),
            ),
            (
                "emails",
                lambda: services.forget_payer_emails(created_before=emails_before, limit=BATCH),
            ),
        ]
        for name, step in steps:
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    report.stopped_early = True
                    return report
                done = step()
                setattr(report, name, getattr(report, name) + done)
                if on_progress is not None and done:
                    on_progress(report)
                if done < BATCH:
                    break
    return report


def note_prune(record: Record, report: PruneReport) -> None:
    record.count({"deliveries": report.deliveries, "emails": report.emails})


def retention_cutoffs(*, older_than: timedelta | None = None) -> tuple[datetime, datetime]:
    """(deliveries received before, payments created before) for a run now."""
    now = timezone.now()
    deliveries = older_than or timedelta(days=settings.DELIVERY_RETENTION_DAYS)
    return now - deliveries, now - timedelta(days=settings.PAYER_EMAIL_RETENTION_DAYS)


@shared_task(
    name="tally.prune_deliveries",
    acks_late=True,
    soft_time_limit=settings.PERIODIC_BUDGET_SECONDS + 60,
    time_limit=settings.PERIODIC_BUDGET_SECONDS + 90,
)
def prune_deliveries_daily() -> dict[str, int]:
    """Beat, daily: retention within PERIODIC_BUDGET_SECONDS (tomorrow's run goes on)."""
    deliveries_before, emails_before = retention_cutoffs()
    try:
        with recorded_by_beat(
            "prune_deliveries", {"older_than_days": settings.DELIVERY_RETENTION_DAYS}
        ) as record:
            report = prune(
                deliveries_before=deliveries_before,
                emails_before=emails_before,
                budget_seconds=settings.PERIODIC_BUDGET_SECONDS,
            )
            note_prune(record, report)
    except PruneRunning:
        logger.info("prune already running elsewhere", extra={"outcome": "skipped"})
        return {}
    logger.info(
        "prune finished",
        extra={"deliveries": report.deliveries, "emails": report.emails},
    )
    return {"deliveries": report.deliveries, "emails": report.emails}
