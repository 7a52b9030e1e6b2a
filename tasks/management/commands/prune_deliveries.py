"""`prune_deliveries [--older-than 90d] [--dry-run]`: retention by hand (docs/operations.md).

Finished deliveries received before the window lose their raw body and payload (the row and
its dedup key stay); payers' emails older than PAYER_EMAIL_RETENTION_DAYS become hashes. An
interface like the daily beat job: both call tasks.retention.prune, one run at a time.
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.durations import parse_duration
from ledger.models import OperatorAction
from ledger.operator_log import add_actor_option, command_actor, recorded
from tasks.retention import PruneReport, PruneRunning, note_prune, prune, retention_cutoffs


class Command(BaseCommand):
    help = (
        "Drop the raw bodies of finished deliveries older than --older-than (default "
        "DELIVERY_RETENTION_DAYS) and hash payers' emails older than "
        "PAYER_EMAIL_RETENTION_DAYS; the rows stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            metavar="DURATION",
            help="e.g. 90d, 2160h (default: DELIVERY_RETENTION_DAYS)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be pruned; change nothing"
        )
        add_actor_option(parser)

    def handle(
        self,
        *args: object,
        older_than: str | None,
        dry_run: bool,
        actor: str | None = None,
        **options: object,
    ) -> None:
        try:
            window = parse_duration(older_than) if older_than else None
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}", returncode=2) from None
        deliveries_before, emails_before = retention_cutoffs(older_than=window)
        self.stdout.write(
            "prune_deliveries: finished deliveries received before "
            f"{deliveries_before:%Y-%m-%d %H:%M}, payers' emails of payments created before "
            f"{emails_before:%Y-%m-%d}"
        )
        try:
            with recorded(
                action="prune_deliveries",
                actor=command_actor(actor),
                via=OperatorAction.Via.COMMAND,
                arguments={"older_than": older_than},
                dry_run=dry_run,
            ) as record:
                report = prune(
                    deliveries_before=deliveries_before,
                    emails_before=emails_before,
                    dry_run=dry_run,
                    on_progress=self._progress,
                )
                note_prune(record, report)
        except PruneRunning as exc:
            self.stdout.write(f"prune_deliveries: {exc}; nothing done")
            return
        if dry_run:
            self.stdout.write(
                f"prune_deliveries: dry run: {report.deliveries} deliveries and {report.emails} "
                "emails would be pruned; nothing changed"
            )
        else:
            self.stdout.write(
                f"prune_deliveries: {report.deliveries} deliveries pruned, "
                f"{report.emails} emails replaced by a hash"
            )

    def _progress(self, report: PruneReport) -> None:
        self.stdout.write(
            f"prune_deliveries: {report.deliveries} deliveries, {report.emails} emails so far"
        )
