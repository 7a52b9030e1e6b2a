from django.core.management.base import BaseCommand

from ledger.models import Contestant, LedgerEntry
from ledger.selectors import contestants_out_of_balance


class Command(BaseCommand):
    help = "Exit 1 listing each contestant whose total differs from the sum of its ledger entries."

    def handle(self, *args: object, **options: object) -> None:
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
