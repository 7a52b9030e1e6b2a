"""`audit_gateway [--since 7d] [--dry-run]`: bring our payments in line with the gateway's
transaction list (reversals whose webhook never came, payments completed after we closed
them). An interface like the daily beat job: both call tasks.audit.audit_gateway."""

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from config.durations import since_option
from ledger.models import OperatorAction
from ledger.operator_log import add_actor_option, command_actor, recorded
from tasks.audit import AuditReport, AuditRunning, audit_gateway, note_audit
from tasks.reports import ranked_outcomes

PROGRESS_EVERY = 200


class Command(BaseCommand):
    help = (
        "Page through the gateway's transactions created within --since (default 7d): reverse "
        "credited payments it shows reversed, settle ones it shows paid that we hold as "
        "pending or failed. Safe beside beat's daily run: one audit runs at a time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since", default="7d", metavar="DURATION", help="e.g. 12h, 7d (default 7d)"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="list what would be reversed or settled; verify nothing, change nothing",
        )
        add_actor_option(parser)

    def handle(
        self,
        *args: object,
        since: str,
        dry_run: bool,
        actor: str | None = None,
        **options: object,
    ) -> None:
        start = since_option(since, now=timezone.now())
        assert start is not None  # since has a default
        self.stdout.write(
            f"audit_gateway: listing the gateway's transactions since {start:%Y-%m-%d %H:%M}"
        )
        try:
            with recorded(
                action="audit_gateway",
                actor=command_actor(actor),
                via=OperatorAction.Via.COMMAND,
                arguments={"since": since},
                dry_run=dry_run,
            ) as record:
                report = audit_gateway(since=start, dry_run=dry_run, on_progress=self._progress)
                note_audit(record, report)
        except AuditRunning as exc:
            self.stdout.write(f"audit_gateway: {exc}; nothing done")
            return
        summary = f"{report.listed} listed, {report.ours} ours{ranked_outcomes(report.outcomes)}"
        if dry_run:
            summary = f"dry run: {summary}; nothing was verified or changed"
        self.stdout.write(f"audit_gateway: {summary}")

    def _progress(self, report: AuditReport) -> None:
        if report.listed % PROGRESS_EVERY == 0:
            self.stdout.write(
                f"audit_gateway: {report.listed} listed so far{ranked_outcomes(report.outcomes)}"
            )
