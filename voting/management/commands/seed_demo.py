from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from ledger.models import Contest, Contestant

DEMO_SLUG = "demo-finale"
DEMO_NAMES = ["Ada", "Bola", "Chidi", "Dayo", "Efe", "Funke", "Gozie", "Halima"]


class Command(BaseCommand):
    help = "Create an open demo contest with N contestants; running it twice changes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contestants", type=int, default=4, help="how many (default 4)")

    def handle(self, *args: object, contestants: int, **options: object) -> None:
        if contestants < 1:
            raise CommandError("--contestants must be at least 1", returncode=2)
        now = timezone.now()
        with transaction.atomic():
            contest, created = Contest.objects.get_or_create(
                slug=DEMO_SLUG,
                defaults={
                    "name": "Demo Finale",
                    "price_per_vote": 5000,
                    "currency": "NGN",
                    "opens_at": now - timedelta(days=1),
                    "closes_at": now + timedelta(days=365),
                },
            )
            added = 0
            for number in range(1, contestants + 1):
                name = DEMO_NAMES[number - 1] if number <= len(DEMO_NAMES) else f"Act {number}"
                _, made = Contestant.objects.get_or_create(
                    contest=contest, slug=f"c{number}", defaults={"name": name}
                )
                added += made
        verb = "created" if created else "kept"
        self.stdout.write(
            f"seed_demo: {verb} contest {contest.slug!r}; {added} contestant(s) added, "
            f"{contest.contestants.count()} in all"
        )
