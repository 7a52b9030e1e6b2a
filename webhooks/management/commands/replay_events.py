from dataclasses import dataclass

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone

from config.durations import since_option
from ledger.models import OperatorAction
from ledger.operator_log import Record, add_actor_option, command_actor, recorded
from webhooks.models import Delivery
from webhooks.selectors import deliveries_matching
from webhooks.services import ReplayResult, note_replay, replay_deliveries

# One transaction and one progress line per batch: short row locks on a long replay, and an
# operator watching a big run sees it move.
BATCH = 500


@dataclass
class Totals:
    matched: int
    replayed: int = 0
    already_processed: int = 0
    skipped: int = 0
    missing: int = 0
    refused_by_broker: int = 0

    def add(self, result: ReplayResult) -> None:
        self.replayed += result.replayed
        self.already_processed += result.already_processed
        self.skipped += result.skipped
        self.missing += result.missing
        self.refused_by_broker += result.refused_by_broker


class Command(BaseCommand):
    help = (
        "Enqueue matching webhook deliveries again (default: the failed ones), through the "
        "same replay as the admin, and print what happened."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status",
            default=Delivery.Status.FAILED.value,
            help=f"one of {', '.join(Delivery.Status.values)} (default: failed)",
        )
        parser.add_argument("--event", help="only this event type, e.g. charge.success")
        parser.add_argument("--reference", help="only deliveries about this payment reference")
        parser.add_argument(
            "--since", help="only deliveries received this recently: 45s, 30m, 2h, 2d"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be replayed; change nothing"
        )
        add_actor_option(parser)

    def handle(
        self,
        *args: object,
        status: str,
        event: str | None,
        reference: str | None,
        since: str | None,
        dry_run: bool,
        actor: str | None = None,
        **options: object,
    ) -> None:
        # Validated here, not with argparse types: call_command passes options past the
        # parser, and a bad argument must exit 2 either way.
        if status not in Delivery.Status.values:
            raise CommandError(
                f"--status {status!r} is not a delivery status; use one of: "
                + ", ".join(Delivery.Status.values),
                returncode=2,
            )
        matching = deliveries_matching(
            status=status,
            event=event,
            reference=reference,
            received_after=since_option(since, now=timezone.now()),
        )
        arguments = {"status": status, "event": event, "reference": reference, "since": since}
        with recorded(
            action="replay_events",
            actor=command_actor(actor),
            via=OperatorAction.Via.COMMAND,
            arguments=arguments,
            dry_run=dry_run,
        ) as record:
            if dry_run:
                self._list(matching, record)
            else:
                self._replay(list(matching.values_list("pk", flat=True)), record)

    def _list(self, matching: QuerySet[Delivery], record: Record) -> None:
        now = timezone.now()
        would_skip = already_processed = matched = 0
        rows = matching.values_list("pk", "event", "reference", "status", "stale_after")
        for pk, event, reference, status, lease_ends in rows.iterator(chunk_size=BATCH):
            matched += 1
            note = ""
            if status == Delivery.Status.PROCESSING and lease_ends >= now:
                would_skip += 1
                note = "  (in progress: would be skipped)"
            elif status == Delivery.Status.PROCESSED:
                already_processed += 1
            self.stdout.write(f"{pk}  {event}  {reference or '-'}  {status}{note}")
        record.count({"matched": matched, "would_skip": would_skip})
        self.stdout.write(
            f"replay_events: dry run, {matched} matched, {matched - would_skip} would be "
            f"replayed ({already_processed} already processed), {would_skip} would be "
            "skipped (in progress); nothing changed"
        )

    def _replay(self, ids: list[int], record: Record) -> None:
        totals = Totals(matched=len(ids))
        for start in range(0, len(ids), BATCH):
            result = replay_deliveries(delivery_ids=ids[start : start + BATCH])
            totals.add(result)
            note_replay(record, result)
            if len(ids) > BATCH:
                done = min(start + BATCH, len(ids))
                self.stdout.write(f"replay_events: {done}/{len(ids)} done")
        summary = (
            f"replay_events: {totals.matched} matched, {totals.replayed} replayed "
            f"({totals.already_processed} were already processed), {totals.skipped} skipped "
            "(in progress)"
        )
        if totals.missing:
            summary += f", {totals.missing} gone before replay"
        if totals.refused_by_broker:
            summary += (
                f"; the broker refused {totals.refused_by_broker}: left as received for the "
                "sweeper to enqueue once it is back"
            )
        self.stdout.write(summary)
