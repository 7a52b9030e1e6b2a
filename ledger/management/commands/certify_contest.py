from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ledger.models import Certification, Contest, OperatorAction
from ledger.operator_log import add_actor_option, command_actor, recorded
from ledger.services import CertifyOutcome, ContestNotClosed, LedgerBusy, certify_contest


class Command(BaseCommand):
    help = (
        "Freeze a closed contest's result (beat does it CERTIFY_GRACE_SECONDS after the close); "
        "on a certified contest, write an amendment if its ledger moved since."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the contest's slug")
        add_actor_option(parser)

    def handle(self, *args: object, slug: str, actor: str | None = None, **options: object) -> None:
        contest = Contest.objects.filter(slug=slug).first()
        if contest is None:
            raise CommandError(f"no contest with slug {slug!r}", returncode=2)
        if timezone.now() < contest.closes_at:
            # A bad argument like an unknown slug: refused before anything is recorded.
            raise CommandError(f"not closed yet: {ContestNotClosed.about(contest)}", returncode=2)
        who = command_actor(actor)
        try:
            with recorded(
                action="certify_contest",
                actor=who,
                via=OperatorAction.Via.COMMAND,
                arguments={"slug": slug},
            ) as record:
                certifying = certify_contest(contest_id=contest.pk, actor=who)
                record.count({certifying.outcome.value: 1})
        except LedgerBusy as exc:
            raise CommandError(f"{exc}; run it again in a moment", returncode=1) from None
        certification = certifying.certification
        self.stdout.write(f"certify_contest: {slug} {_what(certifying.outcome, certification)}")
        entries = certification.entries
        self.stdout.write(
            f"  {entries} ledger entr{'y' if entries == 1 else 'ies'}, root {certification.root}"
        )
        if certifying.outcome == CertifyOutcome.AMENDED:
            self.stdout.write(f"  {certification.reason}")
        grace_ends = contest.closes_at + timedelta(seconds=settings.CERTIFY_GRACE_SECONDS)
        if certifying.outcome == CertifyOutcome.CERTIFIED and timezone.now() < grace_ends:
            self.stdout.write(
                "  note: certified inside the grace period; a payment made before the close "
                "that settles later makes an amendment"
            )


def _what(outcome: CertifyOutcome, certification: Certification) -> str:
    if outcome == CertifyOutcome.CERTIFIED:
        return "certified"
    if outcome == CertifyOutcome.AMENDED:
        return f"amended: amendment {certification.number}"
    when = certification.certified_at.isoformat(timespec="seconds")
    latest = "certification" if certification.number == 0 else f"amendment {certification.number}"
    return f"is already certified; nothing new in the ledger since its {latest} of {when}"
