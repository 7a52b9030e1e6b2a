from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.models import Contest, Contestant, LedgerEntry
from ledger.selectors import contestants_out_of_balance, latest_certification, result_differences


class Command(BaseCommand):
    help = (
        "Exit 1 listing each contestant whose total differs from the sum of its ledger entries; "
        "with --results SLUG, recompute the contest's certified result and root instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--results",
            metavar="SLUG",
            help="recompute this contest's latest certification from the ledger and compare",
        )

    def handle(self, *args: object, results: str | None, **options: object) -> None:
        if results is not None:
            self.check_results(results)
            return
        broken = list(contestants_out_of_balance())
        for contestant in broken:
            self.stdout.write(
                f"OUT OF BALANCE contestant {contestant.pk} ({contestant.name}): "
                f"votes={contestant.votes} ledger={contestant.ledger_votes} "
                f"difference={contestant.votes - contestant.ledger_votes:+d}"
            )
        credits = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CREDIT).count()
        reversals = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REVERSAL).count()
        summary = (
            f"check_ledger: {Contestant.objects.count()} contestants, {credits} credits, "
            f"{reversals} reversals, {len(broken)} out of balance"
        )
        self.stdout.write(summary)
        if broken:
            raise SystemExit(1)

    def check_results(self, slug: str) -> None:
        contest = Contest.objects.filter(slug=slug).first()
        if contest is None:
            raise CommandError(f"--results: no contest with slug {slug!r}", returncode=2)
        certification = latest_certification(contest=contest)
        if certification is None:
            raise CommandError(f"--results: {slug} is not certified yet", returncode=2)
        differences = result_differences(certification=certification)
        for difference in differences:
            self.stdout.write(f"DIFFERS {difference}")
        self.stdout.write(
            f"check_ledger --results {slug}: {certification}, {certification.entries} entries, "
            f"root {certification.root}; {len(differences)} difference(s)"
        )
        if differences:
            raise SystemExit(1)
