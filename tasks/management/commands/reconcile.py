"""`reconcile [--since 2d] [--dry-run]`: ask the gateway about payments still pending.

An interface like the beat task: both call tasks.reconcile.reconcile_payments, which claims
each payment before verifying it, so running this beside beat never asks twice.
"""

from datetime import UTC, datetime
from functools import partial

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from config.durations import since_option
from ledger.models import OperatorAction, Payment
from ledger.operator_log import add_actor_option, command_actor, recorded
from ledger.selectors import payments_to_reconcile
from ledger.services import verified_within_cooldown
from tasks.reconcile import ReconcileReport, reconcile_payments
from tasks.reports import ranked_outcomes

PROGRESS_EVERY = 100


class Command(BaseCommand):
    help = (
        "Verify payments still pending (created within --since; default all) with the gateway "
        "and settle them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            metavar="DURATION",
            help="only payments created within this window, e.g. 30m, 2h, 2d (default: all)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="list the payments that would be verified; call nothing, change nothing",
        )
        add_actor_option(parser)

    def handle(
        self,
        *args: object,
        since: str | None,
        dry_run: bool,
        actor: str | None = None,
        **options: object,
    ) -> None:
        now = timezone.now()
        created_after = since_option(since, now=now)
        window = "" if created_after is None else f" created since {_when(created_after)}"
        with recorded(
            action="reconcile",
            actor=command_actor(actor),
            via=OperatorAction.Via.COMMAND,
            arguments={"since": since},
            dry_run=dry_run,
        ) as record:
            if dry_run:
                self._dry_run(now=now, created_after=created_after, window=window)
                return
            report = self._reconcile(now=now, created_after=created_after, window=window)
            record.count({"checked": report.checked, "skipped": report.skipped, **report.outcomes})
            record.touched(payments=report.references)

    def _reconcile(
        self, *, now: datetime, created_after: datetime | None, window: str
    ) -> ReconcileReport:
        pending = payments_to_reconcile(created_before=now, created_after=created_after).count()
        self.stdout.write(f"reconcile: {pending} pending payment(s){window}; verifying")
        report = reconcile_payments(
            created_before=now,
            created_after=created_after,
            on_progress=partial(self._progress, total=pending),
        )
        summary = f"reconcile: {report.checked} checked{ranked_outcomes(report.outcomes)}"
        if report.skipped:
            summary += f"; {report.skipped} skipped: verified moments ago by another path"
        self.stdout.write(summary)
        return report

    def _dry_run(self, *, now: datetime, created_after: datetime | None, window: str) -> None:
        """List what a real run would verify, with the same window and the same skip rule."""
        would_check = skipped = 0
        payments = payments_to_reconcile(created_before=now, created_after=created_after).only(
            "reference", "created_at", "amount", "currency", "verified_at"
        )
        for payment in payments.iterator():
            line = _listing(payment)
            if payment.verified_at is not None and verified_within_cooldown(payment, now=now):
                skipped += 1
                line += f"  (skip: verified at {_when(payment.verified_at)})"
            else:
                would_check += 1
            self.stdout.write(line)
        summary = f"reconcile --dry-run: would check {would_check} pending payment(s){window}"
        if skipped:
            summary += f"; {skipped} verified moments ago would be skipped"
        self.stdout.write(summary + "; nothing was verified or changed")

    def _progress(self, report: ReconcileReport, *, total: int) -> None:
        if report.checked % PROGRESS_EVERY == 0:
            self.stdout.write(
                f"reconcile: {report.checked}/{total} checked{ranked_outcomes(report.outcomes)}"
            )


def _listing(payment: Payment) -> str:
    return f"{payment.reference}  {_when(payment.created_at)}  {payment.amount} {payment.currency}"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")
