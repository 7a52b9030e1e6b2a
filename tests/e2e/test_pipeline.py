"""End to end: the real sandbox posts webhooks to real gunicorn; real Celery workers settle."""

import random
import subprocess
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from bench.processes import free_port
from ledger.models import LedgerEntry, Payment, VoteShard
from tasks.payments import reconcile_payments
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


def test_work_of_a_sigkilled_worker_is_finished_by_another(any_broker, stack, sandbox, web):
    first = stack.worker("doomed", concurrency=2)
    payments = make_payments(20, [ContestantFactory()])
    sandbox.paid(payments)
    # Slow verify (1.5 s, under PAYSTACK_TIMEOUT=2) keeps tasks in flight when the kill lands.
    sandbox.post("faults", {"endpoint": "verify", "fault": "timeout", "delay": 1.5, "count": 4})
    for payment in payments:
        sandbox.deliver(payment.reference)

    wait_until(lambda: Delivery.objects.filter(status="processing").exists(), timeout=20)
    stack.kill(first.name)
    killed_at = time.monotonic()
    assert not all_credited(payments)()

    stack.worker("survivor", concurrency=2)
    stack.beat()
    wait_until(all_credited(payments), timeout=4 + 30)  # STUCK_AFTER_SECONDS + 30 s

    assert time.monotonic() - killed_at < 4 + 30 + 15
    assert_exactly_once(payments)


def test_deliveries_stored_while_the_broker_is_down_are_settled_once_it_is_back(
    stack, sandbox, tmp_path
):
    port = free_port()
    broker_url = f"redis://127.0.0.1:{port}/0"
    redis_argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    redis_argv += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    own_redis = subprocess.Popen(redis_argv, stdout=subprocess.DEVNULL)
    try:
        env = {"CELERY_BROKER_URL": broker_url, "REDIS_URL": broker_url}
        stack.web(port=int(stack.env["WEB_PORT"]), **env)
        payments = make_payments(10, [ContestantFactory()])
        sandbox.paid(payments)
        own_redis.kill()
        own_redis.wait(timeout=10)

        statuses = [
            sandbox.post("deliver", {"reference": p.reference, "wait": True})["statuses"]
            for p in payments
        ]

        assert statuses == [[200]] * 10
        assert Delivery.objects.filter(status="received").count() == 10

        own_redis = subprocess.Popen(redis_argv, stdout=subprocess.DEVNULL)
        stack.worker(**env)
        stack.beat(**env)
        wait_until(all_credited(payments), timeout=30)
        assert_exactly_once(payments)
    finally:
        own_redis.kill()
        own_redis.wait(timeout=10)


def test_gateway_errors_for_a_stretch_are_retried_and_settle_once(stack, sandbox, web):
    stack.worker(concurrency=2)
    payments = make_payments(12, [ContestantFactory()])
    sandbox.paid(payments)
    sandbox.post("faults", {"endpoint": "verify", "fault": "500", "count": 6})
    sandbox.post("faults", {"endpoint": "verify", "fault": "429", "count": 4, "retry_after": 1})
    sandbox.post("faults", {"endpoint": "verify", "fault": "timeout", "count": 2, "delay": 3})

    for payment in payments:
        sandbox.deliver(payment.reference, times=2)

    wait_until(all_credited(payments), timeout=60)
    assert_exactly_once(payments)
    assert sandbox.stats()["faults_served"] == 12
    assert Delivery.objects.filter(attempts__gt=1).exists()
