"""End to end: the real sandbox posts webhooks to real gunicorn; real Celery workers settle."""

import random
import threading
from datetime import timedelta

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from ledger.models import LedgerEntry, Payment, VoteShard
from tasks.reconcile import reconcile_payments
from tests.factories import ContestantFactory, PaymentFactory
from tests.helpers import wait_until
from webhooks.models import Delivery

pytestmark = pytest.mark.e2e


def make_payments(count: int, contestants: list) -> list[Payment]:
    return [
        PaymentFactory(contestant=contestants[i % len(contestants)], votes=1 + i % 4)
        for i in range(count)
    ]


def assert_exactly_once(payments: list[Payment]) -> None:
    """Every payment credited once, every total equal to its ledger: lost = doubled = 0."""
    references = [p.reference for p in payments]
    credited = Payment.objects.filter(reference__in=references, status="credited").count()
    assert credited == len(payments)
    assert LedgerEntry.objects.filter(payment__reference__in=references).count() == len(payments)
    expected_total = sum(p.votes for p in payments)
    assert VoteShard.objects.aggregate(total=Sum("votes"))["total"] == expected_total
    call_command("check_ledger")  # exits 1 if any total differs from its ledger


def all_credited(payments: list[Payment]):
    def check() -> bool:
        references = [p.reference for p in payments]
        return Payment.objects.filter(reference__in=references, status="credited").count() == len(
            payments
        )

    check.__name__ = f"all {len(payments)} payments credited"
    return check


def test_duplicated_shuffled_deliveries_with_callbacks_and_reconcile_credit_once(
    any_broker, stack, sandbox, web
):
    stack.worker(concurrency=2)
    contestants = [ContestantFactory() for _ in range(3)]
    payments = make_payments(100, contestants)
    sandbox.paid(payments)
    # Backdate them so the reconcile run below considers every one of them.
    Payment.objects.update(created_at=timezone.now() - timedelta(minutes=30))
    order = [p.reference for p in payments]
    random.shuffle(order)

    def reconcile_all() -> None:
        try:
            reconcile_payments(created_before=timezone.now())
        finally:
            connection.close()  # the thread's own connection would block the test DB's teardown

    reconcile = threading.Thread(target=reconcile_all)
    reconcile.start()
    for reference in order:
        sandbox.deliver(reference, times=5)  # five concurrent copies of the same webhook
        requests.get(f"{web}/payments/callback/", params={"reference": reference}, timeout=10)
    reconcile.join()

    wait_until(all_credited(payments), timeout=90)
    assert_exactly_once(payments)
    assert Delivery.objects.count() == 100  # the 400 repeats were counted, not stored
    verifies = sandbox.stats()["verify_by_reference"]
    assert max(verifies[r] for r in order) <= 3  # delivery, callback, reconcile at most
