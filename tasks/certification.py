"""Certification: freeze each contest's result once voting is over, amend it when the ledger
moves after (docs/operations.md, certified results)."""

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from ledger import services
from ledger.models import Contest
from ledger.operator_log import recorded_by_beat
from ledger.selectors import contests_to_certify
from tasks.locks import single_run

logger = logging.getLogger(__name__)


@dataclass
class CertifyReport:
    outcomes: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False  # the time budget ran out; the next run goes on

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def certify_due_contests(*, budget_seconds: float | None = None) -> CertifyReport:
    """Certify the contests that are due, and amend certified ones whose ledger moved.

    1. List them (ledger.selectors.contests_to_certify): closed at least CERTIFY_GRACE_SECONDS
       ago and not certified, so payments made before the close and settled late still count;
       and certified ones with ledger entries past their latest certification.
    2. Certify or amend each through ledger.services.certify_contest, the earliest to close
       first; one whose ledger is busy is left for the next run.
    3. Stop taking new contests once `budget_seconds` have passed.
    """
    report = CertifyReport()
    closed_before = timezone.now() - timedelta(seconds=settings.CERTIFY_GRACE_SECONDS)
    due = list(contests_to_certify(closed_before=closed_before))
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    for contest in due:
        if deadline is not None and time.monotonic() > deadline:
            report.stopped_early = True
            break
        report.add(_certify(contest))
    return report


def _certify(contest: Contest) -> str:
    """Certify or amend one contest, recorded in the operator log as beat's."""
    try:
        with recorded_by_beat("certify_contest", {"slug": contest.slug}) as record:
            certifying = services.certify_contest(contest_id=contest.pk)
            record.count({certifying.outcome.value: 1})
    except services.LedgerBusy as exc:
        logger.warning(
            "certification postponed", extra={"contest": contest.slug, "error": str(exc)}
        )
        return "ledger_busy"
    return certifying.outcome.value


@shared_task(
    name="tally.certify_contests",
    acks_late=True,
    soft_time_limit=settings.PERIODIC_BUDGET_SECONDS + 120,
    time_limit=settings.PERIODIC_BUDGET_SECONDS + 180,
)
def certify_contests() -> dict[str, int]:
    """Beat: certify contests CERTIFY_GRACE_SECONDS after they close, and write amendments;
    one run at a time, within PERIODIC_BUDGET_SECONDS (a contest is certified whole: the
    budget is checked between contests)."""
    with single_run("tally.certify") as taken:
        if not taken:
            logger.info("certification already running elsewhere", extra={"outcome": "skipped"})
            return {}
        report = certify_due_contests(budget_seconds=settings.PERIODIC_BUDGET_SECONDS)
    logger.info(
        "certification finished",
        extra={"stopped_early": report.stopped_early, **report.outcomes},
    )
    return report.outcomes
