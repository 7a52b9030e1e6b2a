"""One popular contestant, many settling transactions at once: the vote shards keep it exact."""

import threading

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Sum
from django.test import Client

from ledger.models import LedgerEntry, Payment, VoteShard
from ledger.services import settle_payment
from tests.factories import ContestantFactory, PaymentFactory
from tests.helpers import run_concurrently, success_for, votes_of

pytestmark = pytest.mark.django_db(transaction=True)

PAYMENTS = 2000
THREADS = 32


def api_total_and_credited_votes(contestant_id: int) -> tuple[int, int]:
    """The API's total and the sum of credited payments' votes, from one snapshot."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rows = Client().get("/api/contestants/").json()["contestants"]
        credited = Payment.objects.filter(contestant_id=contestant_id, status="credited")
        credited_votes = credited.aggregate(total=Sum("votes"))["total"] or 0
    api_total = next(row["votes"] for row in rows if row["id"] == contestant_id)
    return api_total, credited_votes


def test_thirty_two_threads_settling_two_thousand_payments_on_one_contestant():
    contestant = ContestantFactory()
    payments = [
        PaymentFactory.build(contestant=contestant, votes=1 + i % 3) for i in range(PAYMENTS)
    ]
    Payment.objects.bulk_create(payments)
    payments = list(Payment.objects.filter(contestant=contestant))
    queue, lock = list(payments), threading.Lock()
    done = threading.Event()
    readings: list[tuple[int, int]] = []

    def settle_until_empty() -> None:
        while True:
            with lock:
                if not queue:
                    return
                payment = queue.pop()
            settle_payment(reference=payment.reference, verification=success_for(payment))

    def read_through_the_api() -> None:
        try:
            while not done.is_set():
                readings.append(api_total_and_credited_votes(contestant.pk))
        finally:
            connection.close()

    reader = threading.Thread(target=read_through_the_api)
    reader.start()
    try:
        run_concurrently(settle_until_empty, times=THREADS)
    finally:
        done.set()
        reader.join()

    expected = sum(p.votes for p in payments)
    assert votes_of(contestant.pk) == expected
    assert LedgerEntry.objects.filter(contestant=contestant, kind="credit").count() == PAYMENTS
    assert VoteShard.objects.filter(contestant=contestant).count() == VoteShard.SHARDS
    call_command("check_ledger")
    assert len(readings) > 1  # the API was read while settles were in flight
    assert all(api_total == credited for api_total, credited in readings)
    assert readings[-1][0] <= expected
