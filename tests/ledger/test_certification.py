"""Certified results: frozen at the close plus the grace period, amended (never edited) when the
ledger moves later, checked against the ledger by check_ledger --results."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from ledger import merkle, services
from ledger.models import (
    Certification,
    CertifiedTotal,
    LedgerEntry,
    OperatorAction,
    Payment,
    VoteShard,
)
from ledger.selectors import receipt_of
from ledger.services import (
    CertifyOutcome,
    ContestNotClosed,
    LedgerBusy,
    certify_contest,
    open_dispute,
    reverse_payment,
    settle_payment,
)
from tasks.certification import certify_contests
from tests.factories import ContestantFactory, ContestFactory, PaymentFactory
from tests.helpers import run_concurrently, success_for, votes_of

pytestmark = pytest.mark.django_db


def closed_contest(*, minutes_ago: int = 120, contestants: int = 2):
    now = timezone.now()
    contest = ContestFactory(
        opens_at=now - timedelta(days=2), closes_at=now - timedelta(minutes=minutes_ago)
    )
    return contest, [ContestantFactory(contest=contest) for _ in range(contestants)]


def credit(contestant, votes: int, **verification) -> Payment:
    """A payment for `votes` credited through the ledger's own service (paid before the close)."""
    payment = PaymentFactory(contestant=contestant, votes=votes)
    paid_at = verification.pop("paid_at", contestant.contest.closes_at - timedelta(minutes=5))
    settle_payment(
        reference=payment.reference,
        verification=success_for(payment, paid_at=paid_at, **verification),
    )
    return Payment.objects.get(pk=payment.pk)


def refund(payment: Payment) -> None:
    reverse_payment(
        reference=payment.reference, verification=success_for(payment, status="reversed")
    )


def root_over_ledger(contest) -> str:
    """The root recomputed here from the ledger, straight from the definition."""
    entries = LedgerEntry.objects.filter(contestant__contest=contest).order_by("id")
    leaves = [
        merkle.leaf_hash(
            f"{e.payment.reference}:{e.kind}:{e.votes}:{e.contestant_id}".encode("ascii")
        )
        for e in entries
    ]
    return merkle.root_of(leaves).hex()


def totals(certification: Certification) -> dict[int, tuple[int, int]]:
    return {
        line.contestant_id: (line.votes, line.votes_under_dispute)
        for line in certification.totals.all()
    }


# --- certification -----------------------------------------------------------------------


def test_beat_certifies_after_the_grace_counting_a_late_settled_payment_and_flagging_a_late_one(
    settings,
):
    contest, (ada, bola) = closed_contest(minutes_ago=10)
    # Paid a minute before the close, settled only now, inside the grace period: it counts.
    before_close = credit(ada, 3, paid_at=contest.closes_at - timedelta(minutes=1))
    # Paid a minute after the close: flagged for a refund, no votes.
    after_close = PaymentFactory(contestant=bola, votes=2)
    settle_payment(
        reference=after_close.reference,
        verification=success_for(after_close, paid_at=contest.closes_at + timedelta(minutes=1)),
    )
    settings.CERTIFY_GRACE_SECONDS = 3600

    in_grace = certify_contests.apply().get()
    settings.CERTIFY_GRACE_SECONDS = 300  # the grace period ended five minutes ago
    after_grace = certify_contests.apply().get()

    assert in_grace == {}  # nothing due yet
    assert after_grace == {"certified": 1}
    assert (before_close.status, Payment.objects.get(pk=after_close.pk).status) == (
        "credited",
        "flagged",
    )
    certification = Certification.objects.get(contest=contest)
    assert certification.number == 0
    assert totals(certification) == {ada.pk: (3, 0), bola.pk: (0, 0)}
    assert certification.flagged == {"paid_after_close": 1}
    assert certification.entries == 1
    assert certification.root == root_over_ledger(contest)
    assert certification.actor == ""  # beat
    assert certify_contests.apply().get() == {}  # certified: nothing more to do
    # Each certification beat wrote is in the operator log; runs with nothing due are not.
    logged = OperatorAction.objects.get()
    assert (logged.action, logged.actor, logged.via, logged.outcome) == (
        "certify_contest",
        "beat",
        "beat",
        "done",
    )
    assert (logged.arguments, logged.counts) == ({"slug": contest.slug}, {"certified": 1})


def test_a_certification_freezes_totals_votes_under_dispute_and_the_root():
    contest, (ada, bola) = closed_contest()
    credit(ada, 5)
    disputed = credit(bola, 2)
    credit(bola, 4)
    refund(credit(ada, 1))  # a credit and its reversal: both are leaves, net nothing
    open_dispute(reference=disputed.reference, dispute_id="d-1", reminded=False)
    other = ContestantFactory()  # another contest's entries are not in this one
    credit(other, 7, paid_at=timezone.now())

    certifying = certify_contest(contest_id=contest.pk)

    certification = certifying.certification
    assert certifying.outcome == CertifyOutcome.CERTIFIED
    assert totals(certification) == {ada.pk: (5, 0), bola.pk: (6, 2)}
    assert certification.entries == 5
    assert certification.root == root_over_ledger(contest)
    assert certification.horizon == LedgerEntry.objects.latest("id").pk
    assert certification.flagged == {}


def test_a_contest_without_votes_is_certified_with_the_empty_root():
    contest, (ada, _) = closed_contest()

    certification = certify_contest(contest_id=contest.pk).certification

    assert certification.entries == 0
    assert certification.root == merkle.EMPTY_ROOT.hex()
    assert totals(certification)[ada.pk] == (0, 0)


def test_a_contest_still_open_or_upcoming_is_not_certified():
    open_contest = ContestFactory()
    upcoming = ContestFactory(opens_at=timezone.now() + timedelta(days=1))
    upcoming.closes_at = upcoming.opens_at + timedelta(days=1)
    upcoming.save()

    for contest in (open_contest, upcoming):
        with pytest.raises(ContestNotClosed, match="certify it after that"):
            certify_contest(contest_id=contest.pk)

    assert not Certification.objects.exists()


def test_certifying_twice_changes_nothing():
    contest, (ada, _) = closed_contest()
    credit(ada, 2)

    first = certify_contest(contest_id=contest.pk)
    second = certify_contest(contest_id=contest.pk)

    assert (first.outcome, second.outcome) == ("certified", "unchanged")
    assert second.certification == first.certification
    assert Certification.objects.count() == 1


# --- amendments ------------------------------------------------------------------------------


def test_a_late_refund_makes_an_amendment_with_its_own_root_and_the_certification_stays():
    contest, (ada, bola) = closed_contest()
    refunded = credit(ada, 3)
    credit(bola, 2)
    certification = certify_contest(contest_id=contest.pk).certification

    refund(refunded)  # a week later: the gateway confirms a refund
    outcome = certify_contests.apply().get()

    assert outcome == {"amended": 1}
    amendment = Certification.objects.get(contest=contest, number=1)
    assert totals(amendment) == {ada.pk: (0, 0), bola.pk: (2, 0)}
    assert amendment.entries == 3
    assert amendment.root == root_over_ledger(contest) != certification.root
    assert amendment.reason == "1 ledger entry since the certification: 1 reversal (-3 votes)"
    # The certification as published stays as it was.
    unchanged = Certification.objects.get(pk=certification.pk)
    assert (unchanged.root, unchanged.entries) == (certification.root, 2)
    assert totals(unchanged) == {ada.pk: (3, 0), bola.pk: (2, 0)}
    assert certify_contests.apply().get() == {}


def test_amendments_are_numbered_in_order():
    contest, (ada, bola) = closed_contest()
    first, second = credit(ada, 3), credit(bola, 1)
    certify_contest(contest_id=contest.pk)

    refund(first)
    certify_contest(contest_id=contest.pk)
    refund(second)
    last = certify_contest(contest_id=contest.pk)

    assert last.outcome == CertifyOutcome.AMENDED
    assert list(contest.certifications.values_list("number", "entries")) == [
        (0, 2),
        (1, 3),
        (2, 4),
    ]
    assert last.certification.reason.startswith("1 ledger entry since amendment 1")


# --- the command -------------------------------------------------------------------------------


def test_certify_contest_certifies_then_says_it_is_certified(capsys):
    contest, (ada, _) = closed_contest()
    credit(ada, 4)

    call_command("certify_contest", contest.slug, actor="ops-anna")
    call_command("certify_contest", contest.slug, actor="ops-anna")

    first, second = capsys.readouterr().out.split("certify_contest: ")[1:]
    certification = Certification.objects.get()
    assert first.startswith(f"{contest.slug} certified")
    assert f"1 ledger entry, root {certification.root}" in first
    assert "already certified; nothing new in the ledger" in second
    assert certification.actor == "ops-anna"
    assert Certification.objects.count() == 1
    # Both runs are in the operator log, with who ran them and what came of it.
    logged = OperatorAction.objects.order_by("id")
    assert [(a.action, a.actor, a.via, a.outcome, a.counts) for a in logged] == [
        ("certify_contest", "ops-anna", "command", "done", {"certified": 1}),
        ("certify_contest", "ops-anna", "command", "done", {"unchanged": 1}),
    ]
    assert logged[0].arguments == {"slug": contest.slug}


def test_certify_contest_writes_the_amendment_when_the_ledger_moved(capsys):
    contest, (ada, _) = closed_contest()
    payment = credit(ada, 4)
    call_command("certify_contest", contest.slug)
    refund(payment)

    call_command("certify_contest", contest.slug)

    out = capsys.readouterr().out
    assert f"{contest.slug} amended: amendment 1" in out
    assert "1 reversal (-4 votes)" in out


def test_certify_contest_refuses_a_contest_not_closed_yet_with_exit_2():
    contest = ContestFactory()

    with pytest.raises(CommandError, match="not closed yet") as refused:
        call_command("certify_contest", contest.slug)

    assert refused.value.returncode == 2
    assert not Certification.objects.exists()
    assert not OperatorAction.objects.exists()  # a bad argument: nothing was done


def test_certify_contest_refuses_an_unknown_slug_with_exit_2():
    with pytest.raises(CommandError, match="no contest with slug 'nope'") as refused:
        call_command("certify_contest", "nope")

    assert refused.value.returncode == 2


# --- check_ledger --results -------------------------------------------------------------------


def check_results(slug: str, capsys) -> tuple[int, str]:
    try:
        call_command("check_ledger", results=slug)
    except SystemExit as exit_info:
        return int(exit_info.code or 0), capsys.readouterr().out
    return 0, capsys.readouterr().out


@pytest.fixture
def certified(capsys):
    contest, (ada, bola) = closed_contest()
    credit(ada, 5)
    credit(bola, 3)
    certify_contest(contest_id=contest.pk)
    capsys.readouterr()
    return contest, ada, bola


def test_check_ledger_results_is_clean_for_an_untouched_result(certified, capsys):
    contest, _, _ = certified

    code, out = check_results(contest.slug, capsys)

    assert code == 0
    assert "DIFFERS" not in out
    assert f"check_ledger --results {contest.slug}: " in out and "0 difference(s)" in out


def test_check_ledger_results_catches_a_tampered_certified_total(certified, capsys):
    contest, ada, _ = certified
    CertifiedTotal.objects.filter(contestant=ada).update(votes=50)

    code, out = check_results(contest.slug, capsys)

    assert code == 1
    assert f"DIFFERS contestant {ada.pk} ({ada.name}): certified 50, ledger 5" in out
    assert "1 difference(s)" in out


def test_check_ledger_results_catches_a_tampered_ledger_entry(certified, capsys):
    contest, ada, _ = certified
    LedgerEntry.objects.filter(contestant=ada).update(votes=6)

    code, out = check_results(contest.slug, capsys)

    assert code == 1
    assert "DIFFERS root: certified" in out
    assert f"DIFFERS contestant {ada.pk} ({ada.name}): certified 5, ledger 6" in out


def test_check_ledger_results_catches_a_live_total_that_moved_without_an_entry(certified, capsys):
    contest, _, bola = certified
    VoteShard.objects.filter(contestant=bola).update(votes=30)

    code, out = check_results(contest.slug, capsys)

    assert code == 1
    assert f"DIFFERS contestant {bola.pk} ({bola.name}): certified 3, live total 30" in out


def test_check_ledger_results_says_an_amendment_is_due(certified, capsys):
    contest, ada, _ = certified
    refund(LedgerEntry.objects.get(contestant=ada).payment)

    due, out_due = check_results(contest.slug, capsys)
    certify_contest(contest_id=contest.pk)
    amended, out_amended = check_results(contest.slug, capsys)

    assert due == 1
    assert "1 ledger entry after" in out_due and "an amendment is due" in out_due
    assert amended == 0
    assert "amendment 1" in out_amended


def test_check_ledger_results_refuses_a_contest_not_certified_with_exit_2():
    contest, _ = closed_contest()

    with pytest.raises(CommandError, match="not certified yet") as refused:
        call_command("check_ledger", results=contest.slug)

    assert refused.value.returncode == 2


# --- receipts ------------------------------------------------------------------------------


def test_every_payments_receipt_proves_its_entries_against_the_root(monkeypatch):
    # Blocks of 4 leaves, so that proofs cross blocks and the last block is partial.
    monkeypatch.setattr(services, "RESULT_BLOCK_LEAVES", 4)
    contest, (ada, bola) = closed_contest()
    payments = [credit(ada if n % 3 else bola, n + 1) for n in range(9)]
    refund(payments[4])
    certification = certify_contest(contest_id=contest.pk).certification
    late = credit(ada, 2)  # settled after certification: not in it yet

    for payment in payments:
        receipt = receipt_of(payment=payment)
        assert receipt.certification == certification
        expected = 2 if payment == payments[4] else 1
        assert len(receipt.proven) == expected
        for proven in receipt.proven:
            leaf = merkle.leaf_hash(
                merkle.entry_bytes(
                    reference=payment.reference,
                    kind=proven.kind,
                    votes=proven.votes,
                    contestant=payment.contestant_id,
                )
            )
            assert proven.leaf == leaf
            assert merkle.root_from_path(leaf, proven.path).hex() == certification.root
    assert sorted(p.index for pay in payments for p in receipt_of(payment=pay).proven) == list(
        range(10)
    )
    pending = receipt_of(payment=late)
    assert (pending.proven, pending.uncovered) == ([], 1)


# --- the horizon: no entry can appear below it later ----------------------------------------


@contextmanager
def ledger_write_in_flight(payment: Payment) -> Iterator[threading.Event]:
    """Another connection credits `payment` (paid before the close) and keeps its transaction
    open, the entry written but not committed, until the event yielded is set."""
    written, release = threading.Event(), threading.Event()
    paid_at = payment.contestant.contest.closes_at - timedelta(seconds=1)

    def write() -> None:
        try:
            with transaction.atomic():
                settle_payment(
                    reference=payment.reference,
                    verification=success_for(payment, paid_at=paid_at),
                )
                written.set()
                release.wait(5)
        finally:
            connection.close()

    writer = threading.Thread(target=write)
    writer.start()
    assert written.wait(5)
    try:
        yield release
    finally:
        release.set()
        writer.join()


@pytest.mark.django_db(transaction=True)
def test_certification_waits_for_a_ledger_write_in_flight_and_counts_it():
    contest, (ada, _) = closed_contest()
    credit(ada, 1)
    in_flight = PaymentFactory(contestant=ada, votes=4)

    with ledger_write_in_flight(in_flight) as release:
        threading.Timer(0.3, release.set).start()  # commits while certification waits
        certification = certify_contest(contest_id=contest.pk).certification

    # The entry's id was drawn before certification looked, its row committed after: the
    # horizon waited for it, so it is covered, and nothing is left for an amendment.
    assert certification.entries == 2
    assert totals(certification)[ada.pk] == (5, 0)
    assert certification.root == root_over_ledger(contest)
    assert certify_contest(contest_id=contest.pk).outcome == CertifyOutcome.UNCHANGED


@pytest.mark.django_db(transaction=True)
def test_a_ledger_write_held_past_the_lock_timeout_postpones_certification(monkeypatch):
    monkeypatch.setattr(services, "HORIZON_LOCK_TIMEOUT", "200ms")
    contest, (ada, _) = closed_contest()
    stuck = PaymentFactory(contestant=ada, votes=4)

    with ledger_write_in_flight(stuck), pytest.raises(LedgerBusy):
        certify_contest(contest_id=contest.pk)

    assert not Certification.objects.exists()
    assert certify_contest(contest_id=contest.pk).certification.entries == 1


@pytest.mark.django_db(transaction=True)
def test_two_certifiers_at_once_write_one_certification():
    contest, (ada, _) = closed_contest()
    credit(ada, 3)

    outcomes = run_concurrently(lambda: certify_contest(contest_id=contest.pk).outcome, times=4)

    assert sorted(outcomes) == ["certified", "unchanged", "unchanged", "unchanged"]
    assert Certification.objects.filter(contest=contest).count() == 1
    assert votes_of(ada.pk) == 3


def test_beat_runs_certification_on_the_periodic_queue_every_minute():
    assert django_settings.CELERY_TASK_ROUTES["tally.certify_contests"] == {"queue": "periodic"}
    schedule = django_settings.CELERY_BEAT_SCHEDULE["certify-contests"]
    assert (schedule["task"], schedule["schedule"]) == ("tally.certify_contests", 60.0)
