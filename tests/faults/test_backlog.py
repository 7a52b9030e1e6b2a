"""Backlogs, lost messages, outages and bad luck never multiply messages or gateway calls
(docs/contract.md, guarantee 7), on real processes and real brokers.

Every message a delivery is sent bumps its generation (the webhook's first is 1), so the sum
of the generations counts the messages sent for the deliveries.
"""

import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from kombu import Connection

from ledger.models import Payment
from tasks.broker import Held
from tasks.deliveries import enqueue_deliveries, process_delivery
from tasks.sweeps import _lost, sweep_stuck_deliveries
from tests.e2e.conftest import RABBITMQ_URL
from tests.e2e.test_pipeline import all_credited, assert_exactly_once, make_payments
from tests.factories import ContestantFactory, DeliveryFactory, PaymentFactory
from tests.helpers import wait_until
from webhooks.models import Delivery, Message

pytestmark = pytest.mark.e2e

# The outage of the backlog test; OUTAGE_SECONDS=180 runs it for the full three minutes.
OUTAGE_SECONDS = float(os.environ.get("OUTAGE_SECONDS", "25"))


def messages_sent() -> int:
    return int(Delivery.objects.aggregate(total=Sum("generation"))["total"] or 0)


def all_overdue() -> bool:
    return not Delivery.objects.filter(status="queued", stale_after__gte=timezone.now()).exists()


def lose_one_message(broker_name: str, redis_broker) -> None:
    """The broker loses one waiting message: Redis one from the middle; RabbitMQ can only
    give one up from the head."""
    if broker_name == "redis":
        waiting = redis_broker.lrange("celery", 0, -1)
        assert redis_broker.lrem("celery", 1, waiting[len(waiting) // 2]) == 1
        return
    with Connection(RABBITMQ_URL, connect_timeout=5) as rabbit:
        channel: Any = rabbit.default_channel  # AMQP's; the stubs say the generic StdChannel
        message = channel.basic_get("celery")
        assert message is not None
        channel.basic_ack(message.delivery_tag)


def test_one_lost_message_in_a_backlog_costs_one_message_more(
    any_broker, stack, sandbox, web, broker
):
    contestant = ContestantFactory()
    payments = make_payments(50, [contestant])
    sandbox.paid(payments)
    for payment in payments:  # one after the other: the queue holds them in that order
        sandbox.post("deliver", {"reference": payment.reference, "wait": True})
    assert Delivery.objects.count() == 50
    lose_one_message(any_broker, broker)

    # Beat's sweeper runs on a worker of its own queue; nobody takes deliveries yet: a backlog.
    stack.worker("periodic", concurrency=1, queues="periodic")
    stack.beat()
    wait_until(all_overdue, timeout=30)
    wait_until(lambda: messages_sent() >= 51, timeout=30)
    time.sleep(8)  # two more sweeps: nothing more may be sent for the backlog
    assert messages_sent() == 51

    stack.worker("deliveries", concurrency=2, queues="celery")
    wait_until(all_credited(payments), timeout=60)
    assert messages_sent() <= 51
    assert_exactly_once(payments)


@pytest.mark.django_db(transaction=True)
def test_lost_messages_behind_others_are_all_sent_again_within_two_sweeps(broker):
    """1,500 lost (overdue, no message) behind 1,000 others waiting (fresh): exact on Redis."""
    long_ago = timezone.now() - timedelta(minutes=10)
    lost = Delivery.objects.bulk_create(
        [DeliveryFactory.build(stale_after=long_ago) for _ in range(1500)]
    )
    others = Delivery.objects.bulk_create([DeliveryFactory.build() for _ in range(1000)])
    for delivery in others:
        process_delivery.delay(delivery.pk, 1)

    first, second = sweep_stuck_deliveries(), sweep_stuck_deliveries()

    assert first["lost_queued"] + second["lost_queued"] == 1500
    assert not Delivery.objects.filter(pk__in=[d.pk for d in lost], generation=1).exists()
    assert Delivery.objects.filter(pk__in=[d.pk for d in others], generation=1).count() == 1000
    assert broker.llen("celery") == 2500


def test_counting_brokers_send_again_the_shortfall_oldest_first():
    """RabbitMQ says how many wait, not which: 1,500 lost behind 1,000 others waiting."""
    overdue = [(pk, 1) for pk in range(1, 1501)]  # the lost ones, oldest first
    queued = [Message(pk, 1) for pk in range(1, 2501)]  # + 1,000 fresh ones, waiting
    held = Held(unidentified=1000, identified_all=False)

    assert _lost(overdue, held, queued) == list(range(1, 1501))
    # The next sweep: the first 1,000 were sent again (new generation, not overdue) and wait.
    again = Held(unidentified=2000, identified_all=False)
    queued_now = [Message(pk, 2) for pk in range(1, 1001)] + queued[1000:]
    assert _lost(overdue[1000:], again, queued_now) == list(range(1001, 1501))


def test_a_gateway_outage_under_a_backlog_multiplies_neither_messages_nor_calls(
    stack, sandbox, web, tmp_path
):
    stack.env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    (tmp_path / "metrics").mkdir()
    payments = make_payments(2000, [ContestantFactory() for _ in range(20)])
    sandbox.paid(payments)
    sandbox.fault(endpoint="verify", fault="timeout", delay=3, count=1_000_000)
    stack.worker(concurrency=4)
    stack.beat()
    deliveries = Delivery.objects.bulk_create([DeliveryFactory.build(payment=p) for p in payments])
    enqueue_deliveries([Message(d.pk, 1) for d in deliveries], by="test")

    time.sleep(OUTAGE_SECONDS)  # the gateway times out; retries wait; the sweeper sweeps
    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=10)
    calls_at_recovery = sandbox.stats()["calls"]["verify"]
    settled_at_recovery = Payment.objects.filter(status="credited").count()
    wait_until(all_credited(payments), timeout=300)

    metrics = requests.get(f"{web}/metrics", timeout=10).text
    swept = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('tally_delivery_messages_sent_total{by="sweeper"}')
    )
    assert 2000 + swept <= 1.1 * 2000
    calls_after = sandbox.stats()["calls"]["verify"] - calls_at_recovery
    settled_after = Payment.objects.filter(status="credited").count() - settled_at_recovery
    assert calls_after / settled_after <= 1.0
    assert_exactly_once(payments)


def caught_in_the_act(attempt: int) -> Callable[[], bool]:
    def processing() -> bool:
        return Delivery.objects.filter(status="processing", attempts=attempt).exists()

    return processing


def test_a_delivery_that_keeps_killing_its_worker_fails_after_the_attempt_cap(stack, sandbox, web):
    """A poison delivery: every worker that takes it dies (an out-of-memory kill, say).
    Each death leaves it `processing` until its lease runs out and the sweeper sends it again;
    the claim past MAX_DELIVERY_ATTEMPTS fails it instead of looping forever."""
    stack.env.update(MAX_DELIVERY_ATTEMPTS="3", VERIFY_COOLDOWN_SECONDS="0")
    poisoned = PaymentFactory()
    sandbox.paid([poisoned])
    # Verify answers slowly: each attempt is caught in the act and its worker killed.
    sandbox.fault(endpoint="verify", fault="timeout", delay=1.5, count=100)
    stack.worker("periodic", concurrency=1, queues="periodic")
    stack.beat()
    sandbox.deliver(poisoned.reference)
    for attempt in (1, 2, 3):
        stack.worker(f"victim-{attempt}", concurrency=1, queues="celery")
        wait_until(caught_in_the_act(attempt), timeout=40)
        stack.kill(f"victim-{attempt}")

    stack.worker("last", concurrency=1, queues="celery")
    wait_until(lambda: Delivery.objects.filter(status="failed").exists(), timeout=40)
    delivery = Delivery.objects.get(reference=poisoned.reference)
    assert (delivery.attempts, delivery.outcome) == (3, "gave up after 3 attempts")
    assert sandbox.stats()["verify_by_reference"][poisoned.reference] <= 3
    assert Payment.objects.get(pk=poisoned.pk).status == "pending"  # reconcile looks later


def test_a_row_lock_held_too_long_fails_the_delivery_and_its_worker_stays_healthy(
    stack, sandbox, web
):
    """A soft time limit cuts off a query mid-flight: the delivery fails with the error, and
    the worker's broken connection is replaced, so its next task works."""
    stuck, next_one = PaymentFactory(), PaymentFactory(votes=2)
    sandbox.paid([stuck, next_one])
    release = threading.Event()

    def hold_the_payment_row() -> None:
        try:
            with transaction.atomic():
                Payment.objects.select_for_update().get(pk=stuck.pk)
                release.wait(60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_payment_row)
    holder.start()
    try:
        stack.worker(concurrency=1)
        sandbox.deliver(stuck.reference)
        wait_until(
            lambda: Delivery.objects.filter(reference=stuck.reference, status="failed").exists(),
            timeout=40,
        )
    finally:
        release.set()
        holder.join()

    failed = Delivery.objects.get(reference=stuck.reference)
    assert (failed.outcome, failed.attempts) == ("unexpected error", 1)
    assert "SoftTimeLimitExceeded" in failed.last_error
    sandbox.deliver(next_one.reference)  # the same single worker process takes it
    wait_until(lambda: Payment.objects.get(pk=next_one.pk).status == "credited", timeout=30)


def test_a_callback_hammered_500_times_costs_at_most_two_verify_calls(stack, sandbox):
    # One client here stands in for many: raised, so the cooldown is what is tested.
    stack.env["RATE_LIMIT_PAYMENTS"] = "100000/m"
    web = stack.web(port=int(stack.env["WEB_PORT"]))
    payment = PaymentFactory()
    sandbox.paid([payment], status="abandoned")
    stack.worker(concurrency=2)
    session = requests.Session()

    for _ in range(500):
        answer = session.get(
            f"{web}/payments/callback/",
            params={"reference": payment.reference},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 302

    time.sleep(3)  # the verifies that were enqueued are drained
    assert sandbox.stats()["verify_by_reference"].get(payment.reference, 0) <= 2


def test_a_fans_pay_flow_costs_exactly_one_verify(stack, sandbox):
    stack.env["VERIFY_COOLDOWN_SECONDS"] = "5"  # the delivery that lost looks again soon
    web = stack.web(port=int(stack.env["WEB_PORT"]))
    stack.worker(concurrency=2)
    answer = requests.post(
        f"{web}/api/payments/",
        json={"contestant": ContestantFactory().pk, "votes": 2, "email": "fan@example.com"},
        timeout=10,
    )
    assert answer.status_code == 201
    reference = answer.json()["reference"]
    checkout = answer.json()["authorization_url"]

    # The sandbox's Pay: charge.success goes to the webhook while the browser follows the
    # redirect to the callback; both ask for a verify at the same moment.
    session = requests.Session()
    paid = session.post(f"{checkout}/pay", allow_redirects=True, timeout=30)
    assert paid.status_code == 200
    payment = Payment.objects.get(reference=reference)
    wait_until(lambda: Payment.objects.get(pk=payment.pk).status == "credited", timeout=30)
    wait_until(
        lambda: Delivery.objects.filter(reference=reference, status="processed").exists(),
        timeout=30,
    )

    assert sandbox.stats()["verify_by_reference"][reference] == 1
    # Whichever path verified, the other found it settled (or waited out the cooldown).
    assert Delivery.objects.get(reference=reference).outcome in ("credited", "already_settled")
