from dataclasses import dataclass
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from ledger.models import Contest, Contestant


@dataclass(frozen=True)
class DemoContest:
    slug: str
    name: str
    price_per_vote: int  # kobo
    names: tuple[str, ...]


# Two contests open at once, as on a real platform: each with its own price and contestants.
DEMO_CONTESTS = (
    DemoContest(
        "demo-finale",
        "Demo Finale",
        5000,
        ("Ada", "Bola", "Chidi", "Dayo", "Efe", "Funke", "Gozie", "Halima"),
    ),
    DemoContest(
        "demo-rising-stars",
        "Demo Rising Stars",
        2000,
        ("Ife", "Jide", "Kemi", "Lola", "Musa", "Nneka", "Obi", "Pelu"),
    ),
)


class Command(BaseCommand):
    help = (
        "Create two open demo contests with N contestants each; running it twice changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contestants", type=int, default=4, help="how many (default 4)")

    def handle(self, *args: object, contestants: int, **options: object) -> None:
        if contestants < 1:
            raise CommandError("--contestants must be at least 1", returncode=2)
        for demo in DEMO_CONTESTS:
            self.seed(demo, contestants)

    def seed(self, demo: DemoContest, contestants: int) -> None:
        now = timezone.now()
        with transaction.atomic():
            contest, created = Contest.objects.get_or_create(
                slug=demo.slug,
                defaults={
                    "name": demo.name,
                    "price_per_vote": demo.price_per_vote,
                    "currency": "NGN",
                    "opens_at": now - timedelta(days=1),
                    "closes_at": now + timedelta(days=365),
                },
            )
            added = 0
            for number in range(1, contestants + 1):
                name = demo.names[number - 1] if number <= len(demo.names) else f"Act {number}"
                _, made = Contestant.objects.get_or_create(
                    contest=contest, slug=f"c{number}", defaults={"name": name}
                )
                added += made
        verb = "created" if created else "kept"
        self.stdout.write(
            f"seed_demo: {verb} contest {contest.slug!r}; {added} contestant(s) added, "
            f"{contest.contestants.count()} in all"
        )
