import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ledger.models import LedgerEntry, Payment, VoteShard
from ledger.services import (
    Outcome,
    VotingClosed,
    create_payment,
    reverse_payment,
    settle_payment,
    settle_payments,
)
from tests.factories import ContestantFactory, ContestFactory, PaymentFactory
from tests.helpers import run_concurrently, success_for, votes_of

pytestmark = pytest.mark.django_db


def test_create_payment_prices_votes_and_makes_a_paystack_reference():
    contestant = ContestantFactory(contest__price_per_vote=2500, contest__currency="GHS")

    payment = create_payment(contestant=contestant, votes=4, email="fan@example.com")

    assert payment.amount == 10000
    assert payment.currency == "GHS"
    assert payment.status == Payment.Status.PENDING
    assert payment.reference.startswith("tly-")
    assert len(payment.reference) <= 64
    assert all(c.isalnum() or c in "-.=" for c in payment.reference)


def test_create_payment_refuses_a_closed_contest():
    closed = ContestFactory(closes_at=timezone.now() - timedelta(minutes=1))
    contestant = ContestantFactory(contest=closed)

    with pytest.raises(VotingClosed, match="closed"):
        create_payment(contestant=contestant, votes=1, email="fan@example.com")

    assert Payment.objects.count() == 0


def test_success_credits_once_and_records_one_entry():
    payment = PaymentFactory(votes=3)

    first = settle_payment(reference=payment.reference, verification=success_for(payment))
    second = settle_payment(reference=payment.reference, verification=success_for(payment))

    assert (first.outcome, second.outcome) == (Outcome.CREDITED, Outcome.ALREADY_SETTLED)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CREDITED
    assert payment.credited_at is not None
    assert payment.gateway_id == 4_099_260_516
    assert votes_of(payment.contestant_id) == 3
    assert list(payment.ledger_entries.values_list("kind", "votes")) == [("credit", 3)]
    assert list(payment.transitions.values_list("from_status", "to_status")) == [
        ("pending", "credited")
    ]


@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
def test_a_batch_writes_each_payment_as_settling_it_alone_would(batched):
    contest = ContestFactory(closes_at=timezone.now() + timedelta(hours=1))
    paid, mismatched, pending = PaymentFactory.create_batch(3, contestant__contest=contest)
    paid_at = timezone.now() - timedelta(minutes=1)
    verifications = {
        paid.reference: success_for(paid, paid_at=paid_at, gateway_id=7),
        mismatched.reference: success_for(mismatched, amount=1, gateway_id=8),
        pending.reference: success_for(pending, status="ongoing", gateway_id=9),
    }

    if batched:
        settle_payments(verifications=verifications)
    else:
        for reference, verification in verifications.items():
            settle_payment(reference=reference, verification=verification)

    rows = {
        payment.reference: payment
        for payment in Payment.objects.filter(pk__in=[paid.pk, mismatched.pk, pending.pk])
    }
    credited, flagged, still = (
        rows[paid.reference],
        rows[mismatched.reference],
        rows[pending.reference],
    )
    assert (credited.status, credited.gateway_id, credited.paid_at) == (
        "credited",
        Decimal(7),
        paid_at,
    )
    assert credited.credited_at == credited.verified_at is not None
    assert credited.updated_at >= credited.verified_at
    assert (flagged.status, flagged.attention, flagged.gateway_id) == (
        "flagged",
        "mismatch",
        Decimal(8),
    )
    assert flagged.reason.startswith("amount: ours")
    assert (flagged.credited_at, still.status, still.gateway_id) == (None, "pending", None)
    assert votes_of(paid.contestant_id) == paid.votes


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": 1}, "amount"),
        ({"currency": "USD"}, "currency"),
        ({"reference": "x"}, "reference"),
    ],
)
def test_success_with_different_values_is_flagged_without_votes(change, reason):
    payment = PaymentFactory(votes=2)

    settlement = settle_payment(
        reference=payment.reference, verification=success_for(payment, **change)
    )

    assert settlement.outcome == Outcome.FLAGGED
    payment.refresh_from_db()
    assert payment.status == Payment.Status.FLAGGED
    assert reason in payment.reason
    assert votes_of(payment.contestant_id) == 0
    assert not LedgerEntry.objects.exists()


def test_failed_charge_fails_the_payment_without_votes():
    payment = PaymentFactory()

    settlement = settle_payment(
        reference=payment.reference, verification=success_for(payment, status="failed")
    )

    assert settlement.outcome == Outcome.FAILED
    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED
    assert votes_of(payment.contestant_id) == 0
    assert not LedgerEntry.objects.exists()


def test_abandoned_is_not_final_so_a_later_success_still_credits():
    payment = PaymentFactory(votes=5)

    abandoned = settle_payment(
        reference=payment.reference, verification=success_for(payment, status="abandoned")
    )
    paid = settle_payment(reference=payment.reference, verification=success_for(payment))

    assert abandoned.outcome == Outcome.STILL_PENDING
    assert paid.outcome == Outcome.CREDITED
    assert votes_of(payment.contestant_id) == 5


def test_abandoned_after_expiry_fails(settings):
    settings.PAYMENT_EXPIRES_AFTER_SECONDS = 60
    payment = PaymentFactory()
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(hours=1))

    settlement = settle_payment(
        reference=payment.reference, verification=success_for(payment, status="abandoned")
    )

    assert settlement.outcome == Outcome.FAILED
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.FAILED


def test_reversal_after_credit_takes_votes_back_once():
    payment = PaymentFactory(votes=4)
    settle_payment(reference=payment.reference, verification=success_for(payment))
    refunded = success_for(payment, status="reversed")

    first = reverse_payment(reference=payment.reference, verification=refunded)
    second = reverse_payment(reference=payment.reference, verification=refunded)

    assert (first.outcome, second.outcome) == (Outcome.REVERSED, Outcome.ALREADY_SETTLED)
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.REVERSED
    assert votes_of(payment.contestant_id) == 0
    assert sorted(payment.ledger_entries.values_list("kind", "votes")) == [
        ("credit", 4),
        ("reversal", -4),
    ]
    call_command("check_ledger")


def test_reversal_before_credit_closes_the_payment_and_a_late_success_credits_nothing():
    payment = PaymentFactory(votes=4)

    reversed_first = reverse_payment(
        reference=payment.reference, verification=success_for(payment, status="reversed")
    )
    late_success = settle_payment(reference=payment.reference, verification=success_for(payment))

    assert reversed_first.outcome == Outcome.REVERSED
    assert late_success.outcome == Outcome.ALREADY_SETTLED
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.REVERSED
    assert votes_of(payment.contestant_id) == 0
    assert not LedgerEntry.objects.exists()


def test_reversal_the_gateway_does_not_confirm_changes_nothing():
    payment = PaymentFactory(votes=2)
    settle_payment(reference=payment.reference, verification=success_for(payment))

    settlement = reverse_payment(reference=payment.reference, verification=success_for(payment))

    assert settlement.outcome == Outcome.STILL_PENDING
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.CREDITED
    assert votes_of(payment.contestant_id) == 2


def test_database_refuses_a_second_credit_entry_for_a_payment():
    payment = PaymentFactory(votes=1)
    settle_payment(reference=payment.reference, verification=success_for(payment))

    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            payment=payment, contestant_id=payment.contestant_id, kind="credit", votes=1
        )


def test_database_refuses_negative_totals_and_wrong_signs():
    contestant = ContestantFactory(votes=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        VoteShard.objects.filter(contestant=contestant).update(votes=-1)
    payment = PaymentFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            payment=payment, contestant_id=payment.contestant_id, kind="credit", votes=-3
        )


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_settling_one_reference_credit_once():
    payment = PaymentFactory(votes=7)
    verification = success_for(payment)

    results = run_concurrently(
        lambda: settle_payment(reference=payment.reference, verification=verification).outcome,
        times=20,
    )

    assert sorted(results).count(Outcome.CREDITED) == 1
    assert results.count(Outcome.ALREADY_SETTLED) == 19
    assert LedgerEntry.objects.filter(payment=payment).count() == 1
    assert votes_of(payment.contestant_id) == 7


@pytest.mark.django_db(transaction=True)
def test_two_hundred_payments_from_eight_threads_sum_exactly(capsys):
    contestant = ContestantFactory()
    payments = [PaymentFactory(contestant=contestant, votes=1 + i % 5) for i in range(200)]
    pending = list(payments)
    lock = threading.Lock()

    def settle_until_empty() -> None:
        while True:
            with lock:
                if not pending:
                    return
                payment = pending.pop()
            settle_payment(reference=payment.reference, verification=success_for(payment))

    run_concurrently(settle_until_empty, times=8)

    assert votes_of(contestant.pk) == sum(p.votes for p in payments)
    assert LedgerEntry.objects.filter(contestant=contestant).count() == 200
    call_command("check_ledger")
    assert "0 out of balance" in capsys.readouterr().out


def _paused_between_read_and_write(barrier: threading.Barrier, write) -> None:
    """Two threads read, both wait at the barrier, then both write: the lost-update race."""
    try:
        write(barrier)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_naive_read_modify_write_loses_an_update_under_the_same_interleaving():
    contestant = ContestantFactory()
    VoteShard.objects.create(contestant=contestant, shard=0, votes=0)
    barrier = threading.Barrier(2)

    def naive(barrier: threading.Barrier) -> None:
        row = VoteShard.objects.get(contestant=contestant, shard=0)  # both threads read 0
        barrier.wait()
        row.votes += 5
        row.save()

    threads = [
        threading.Thread(target=_paused_between_read_and_write, args=(barrier, naive))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert votes_of(contestant.pk) == 5  # one of the two +5s was lost: the harness sees it


@pytest.mark.django_db(transaction=True)
def test_service_under_the_same_interleaving_loses_nothing():
    contestant = ContestantFactory()
    made = [PaymentFactory(contestant=contestant, votes=5) for _ in range(VoteShard.SHARDS + 1)]
    # The first and the last land on the same shard row: the same contention as above.
    payments = [made[0], made[-1]]
    assert VoteShard.shard_of(made[0].pk) == VoteShard.shard_of(made[-1].pk)
    barrier = threading.Barrier(2)
    remaining = list(payments)

    def service(barrier: threading.Barrier) -> None:
        payment = remaining.pop()
        VoteShard.objects.filter(contestant=contestant).first()  # the same read as the naive code
        barrier.wait()
        settle_payment(reference=payment.reference, verification=success_for(payment))

    threads = [
        threading.Thread(target=_paused_between_read_and_write, args=(barrier, service))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert votes_of(contestant.pk) == 10
    call_command("check_ledger")
