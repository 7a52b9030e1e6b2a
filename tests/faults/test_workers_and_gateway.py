"""Faults behind the front door, on real processes: a worker SIGKILLed mid-run, the broker down
during ingest, the gateway failing for a stretch. Each ends with the exactness check."""

import subprocess
import time

import pytest

from devstack.processes import free_port
from tests.e2e.test_pipeline import all_credited, assert_exactly_once, make_payments
from tests.factories import ContestantFactory
from tests.helpers import wait_until
from webhooks.models import Delivery

pytestmark = pytest.mark.e2e


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
    wait_until(all_credited(payments), timeout=8 + 30)  # STUCK_AFTER_SECONDS + 30 s

    assert time.monotonic() - killed_at < 4 + 30 + 15
    assert_exactly_once(payments)


def test_a_batch_of_a_sigkilled_worker_is_settled_once_by_another(any_broker, stack, sandbox, web):
    payments = make_payments(20, [ContestantFactory()])
    sandbox.paid(payments)
    for payment in payments:  # stored and queued while no worker runs: one batch takes them
        sandbox.deliver(payment.reference)
    wait_until(lambda: Delivery.objects.filter(status="queued").count() == 20, timeout=20)
    # The dead batch took every payment's verify claim: the survivor verifies them again once
    # the cooldown is over, not at once (a call may have reached the gateway).
    stack.env["VERIFY_COOLDOWN_SECONDS"] = "5"
    # Slow verify (1.5 s, under PAYSTACK_TIMEOUT=2): the batch is mid-verify when killed.
    sandbox.post("faults", {"endpoint": "verify", "fault": "timeout", "delay": 1.5, "count": 20})
    first = stack.worker("doomed", concurrency=1)

    wait_until(lambda: Delivery.objects.filter(status="processing").count() > 1, timeout=20)
    stack.kill(first.name)
    assert not all_credited(payments)()

    stack.worker("survivor", concurrency=2)
    stack.beat()
    # STUCK_AFTER_SECONDS + VERIFY_COOLDOWN_SECONDS + 30 s
    wait_until(all_credited(payments), timeout=8 + 5 + 30)

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
