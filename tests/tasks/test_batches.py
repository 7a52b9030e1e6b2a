"""Batched processing (docs/delivery-engine.md#batched-settlement): one task run takes many
delivery messages and settles their charge.success deliveries together, each exactly once,
each with its own outcome."""

import itertools
import threading
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from celery.exceptions import SoftTimeLimitExceeded
from celery_batches import SimpleRequest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from ledger import services
from ledger.models import LedgerEntry, Payment, PaymentTransition
from tasks.batches import MessageBatches, messages_of
from tasks.deliveries import process_deliveries, process_delivery
from tasks.sweeps import sweep_stuck_deliveries
from tasks.verification import verify_payment
from tests.factories import ContestantFactory, DeliveryFactory, PaymentFactory
from tests.helpers import counted, run_concurrently, says, verify_answer, verify_url, votes_of
from webhooks.models import Delivery, Message


@pytest.fixture
def gateway():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sent() -> Any:
    """The retry and cooldown messages the batch sends, recorded instead of published."""
    with mock.patch.object(process_delivery, "apply_async") as apply_async:
        yield apply_async


def paid(gateway, count: int, *, votes: int = 2) -> list[Delivery]:
    """`count` pending payments of one contestant, each with its queued charge.success
    delivery, that the gateway says are paid."""
    contestant = ContestantFactory()
    deliveries: list[Delivery] = []
    for _ in range(count):
        payment = PaymentFactory(contestant=contestant, votes=votes)
        says(gateway, payment)
        deliveries.append(DeliveryFactory(payment=payment))
    return deliveries


def request(args: tuple[Any, ...]) -> SimpleRequest:
    """A buffered message as celery-batches hands it to the task."""
    return SimpleRequest(
        id="test",
        name="tally.process_deliveries",
        args=args,
        kwargs={},
        delivery_info={},
        hostname="test",
        ignore_result=True,
        reply_to=None,
        correlation_id=None,
        request_dict={},
    )


def run_batch(deliveries: list[Delivery]) -> dict[str, int]:
    """One task run over the current message of each delivery."""
    return process_deliveries([request((d.pk, d.generation)) for d in deliveries])


def run(delivery: Delivery, generation: int | None = None) -> str:
    return str(process_delivery.apply(args=(delivery.pk, generation or delivery.generation)).get())


def statuses(deliveries: list[Delivery]) -> list[tuple[str, str]]:
    rows = Delivery.objects.in_bulk([d.pk for d in deliveries])
    return [(rows[d.pk].status, rows[d.pk].outcome) for d in deliveries]


def assert_credited_once(deliveries: list[Delivery], *, votes: int = 2) -> None:
    references = [d.reference for d in deliveries]
    payments = Payment.objects.filter(reference__in=references)
    assert {p.status for p in payments} == {"credited"}
    for payment in payments:
        assert LedgerEntry.objects.filter(payment=payment).count() == 1
        assert PaymentTransition.objects.filter(payment=payment, to_status="credited").count() == 1
    contestant_id = payments[0].contestant_id
    assert votes_of(contestant_id) == votes * len(deliveries)


@pytest.mark.django_db
def test_one_task_run_settles_a_batch_each_once_with_one_verify_call_each(gateway):
    deliveries = paid(gateway, 6, votes=2)
    credited_before = counted("tally_payments_settled_total", outcome="credited")
    votes_before = counted("tally_votes_credited_total")

    assert run_batch(deliveries) == {"skipped": 0, "processed": 6}

    assert statuses(deliveries) == [("processed", "credited")] * 6
    assert_credited_once(deliveries, votes=2)
    assert sorted(call.request.url for call in gateway.calls) == sorted(
        verify_url(d.reference) for d in deliveries
    )
    assert counted("tally_payments_settled_total", outcome="credited") == credited_before + 6
    assert counted("tally_votes_credited_total") == votes_before + 12
    # Each delivery was claimed once, under its own generation.
    assert {(d.attempts, d.generation) for d in Delivery.objects.all()} == {(1, 1)}


@pytest.mark.django_db
def test_a_message_again_for_a_settled_delivery_exits_without_a_gateway_call(gateway):
    first, second = paid(gateway, 2)
    run_batch([first, second])
    calls = len(gateway.calls)

    assert run_batch([first, second]) == {"skipped": 2}
    assert run(second) == "skipped"
    assert len(gateway.calls) == calls


@pytest.mark.django_db
def test_a_delivery_leased_by_another_batch_is_skipped(gateway):
    first, second = paid(gateway, 2)
    Delivery.objects.claim_all([(second.pk, 1)], lease_seconds=60, max_attempts=10)

    assert run_batch([first, second]) == {"skipped": 1, "processed": 1}
    assert statuses([second]) == [("processing", "")]
    assert len(gateway.calls) == 1


@pytest.mark.django_db
def test_a_message_of_an_older_generation_or_not_yet_due_is_skipped(gateway):
    old, waiting, due = paid(gateway, 3)
    Delivery.objects.filter(pk=old.pk).update(generation=2)
    Delivery.objects.filter(pk=waiting.pk).update(not_before=timezone.now() + timedelta(minutes=5))

    assert process_deliveries(
        [request((old.pk, 1)), request((waiting.pk, 1)), request((due.pk, 1))]
    ) == {"skipped": 2, "processed": 1}
    assert statuses([old, waiting]) == [("queued", "")] * 2


@pytest.mark.django_db
def test_a_mixed_batch_gives_each_delivery_its_own_outcome(gateway, sent):
    good = paid(gateway, 3)
    contestant = ContestantFactory()
    mismatch = PaymentFactory(contestant=contestant)
    says(gateway, mismatch, amount=1)
    down = PaymentFactory(contestant=contestant)
    gateway.add(responses.GET, verify_url(down.reference), status=500, json={"status": False})
    unknown_to_gateway = PaymentFactory(contestant=contestant)
    gateway.add(
        responses.GET,
        verify_url(unknown_to_gateway.reference),
        status=404,
        json={"status": False, "message": "Transaction reference not found."},
    )
    settled = PaymentFactory(contestant=contestant, status="credited", credited_at=timezone.now())
    others: list[Delivery] = [
        DeliveryFactory(payment=mismatch),
        DeliveryFactory(payment=down),
        DeliveryFactory(payment=unknown_to_gateway),
        DeliveryFactory(payment=settled),
        DeliveryFactory(reference="tly-not-ours"),
        DeliveryFactory(event="subscription.create", reference=""),
    ]

    assert run_batch(good + others) == {
        "skipped": 0,
        "processed": 5,
        "retrying": 1,
        "failed": 1,
        "ignored": 2,
    }

    assert statuses(good) == [("processed", "credited")] * 3
    assert_credited_once(good)
    assert statuses(others) == [
        ("processed", "flagged"),
        ("queued", ""),
        ("failed", "gateway refused"),
        ("processed", "already_settled"),
        ("ignored", "reference is not ours"),
        ("ignored", "subscription.create is not acted on"),
    ]
    assert Payment.objects.get(pk=mismatch.pk).status == "flagged"
    assert Payment.objects.get(pk=down.pk).status == "pending"
    # Only payments a verdict can change were asked about, each once.
    assert len(gateway.calls) == 6
    # The outage goes the retry path: its lease back under a new generation, a new
    # process_delivery message of that generation sent, and its verify claim given back.
    retried = Delivery.objects.get(pk=others[1].pk)
    assert retried.generation == 2
    assert "500" in retried.last_error
    assert Payment.objects.get(pk=down.pk).verified_at is None
    assert [call.args[0] for call in sent.call_args_list] == [Message(retried.pk, 2)]

    gateway.replace(responses.GET, verify_url(down.reference), json=verify_answer(down))
    assert run(retried, 2) == "processed"
    assert Payment.objects.get(pk=down.pk).status == "credited"
    assert LedgerEntry.objects.filter(payment=down).count() == 1


@pytest.mark.django_db
def test_a_payment_verified_moments_ago_is_looked_at_again_after_the_cooldown(
    gateway, sent, settings
):
    settings.VERIFY_COOLDOWN_SECONDS = 30
    first, second = paid(gateway, 2)
    services.claim_verify(reference=second.reference)  # the callback asked just now

    assert run_batch([first, second]) == {"skipped": 0, "processed": 1, "cooldown": 1}

    assert statuses([first]) == [("processed", "credited")]
    requeued = Delivery.objects.get(pk=second.pk)
    assert (requeued.status, requeued.generation) == ("queued", 2)
    assert [call.args[0] for call in sent.call_args_list] == [Message(second.pk, 2)]
    assert 25 < sent.call_args.kwargs["countdown"] <= 30
    assert len(gateway.calls) == 1


@pytest.mark.django_db
def test_an_unexpected_error_in_the_batch_settles_its_deliveries_one_by_one(gateway):
    deliveries = paid(gateway, 4)
    poison = deliveries[2].reference
    real_settle = services.settle_payment

    def settle_unless_poison(*, reference: str, verification: Any) -> services.Settlement:
        if reference == poison:
            raise ValueError("a row the database refuses")
        return real_settle(reference=reference, verification=verification)

    with (
        mock.patch.object(services, "settle_payments", side_effect=RuntimeError("batch bug")),
        mock.patch.object(services, "settle_payment", side_effect=settle_unless_poison),
    ):
        assert run_batch(deliveries) == {"skipped": 0, "processed": 3, "failed": 1}

    good = [d for d in deliveries if d.reference != poison]
    assert statuses(good) == [("processed", "credited")] * 3
    assert_credited_once(good)
    failed = Delivery.objects.get(pk=deliveries[2].pk)
    assert (failed.status, failed.outcome) == ("failed", "unexpected error")
    assert "a row the database refuses" in failed.last_error
    assert Payment.objects.get(reference=poison).status == "pending"
    assert len(gateway.calls) == 4  # the answers were not asked for again


@pytest.mark.django_db
def test_a_delivery_at_the_attempt_cap_fails_without_a_call_and_the_rest_settle(gateway, settings):
    settings.MAX_DELIVERY_ATTEMPTS = 3
    first, capped = paid(gateway, 2)
    Delivery.objects.filter(pk=capped.pk).update(attempts=3)

    assert run_batch([first, capped]) == {"skipped": 0, "processed": 1, "failed": 1}

    assert statuses([first, capped]) == [
        ("processed", "credited"),
        ("failed", "gave up after 3 attempts"),
    ]
    assert len(gateway.calls) == 1


@pytest.mark.django_db
def test_a_message_that_names_no_delivery_is_dropped_and_the_rest_settle(gateway):
    (delivery,) = paid(gateway, 1)
    requests = [request(("not a number", 1)), request(()), request((delivery.pk, 1))]

    assert messages_of(requests) == [(delivery.pk, 1)]
    assert process_deliveries(requests) == {"skipped": 0, "processed": 1}


def test_the_worker_acknowledges_a_batch_only_after_its_run_and_puts_a_lost_run_back():
    """MessageBatches.flush: what the pool is asked to do with a full buffer."""

    class Pool:
        def __init__(self) -> None:
            self.options: dict[str, Any] = {}

        def apply_async(self, target: Any, args: Any, **options: Any) -> None:
            self.options = options

    buffered = [mock.Mock(args=(n, 1), kwargs={}) for n in range(3)]
    task = MessageBatches()
    task._pool = pool = Pool()
    with mock.patch.object(SimpleRequest, "from_request", side_effect=lambda r: r):
        task.flush(buffered)

    assert not any(r.acknowledge.called or r.reject.called for r in buffered)
    assert pool.options["timeout"] < pool.options["soft_timeout"] + 60
    pool.options["callback"](None)
    assert all(r.acknowledge.call_count == 1 for r in buffered)
    pool.options["error_callback"](RuntimeError("child killed"))
    assert all(r.reject.call_args == mock.call(requeue=True) for r in buffered)


# --- races and recovery, on real transactions -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_batches_racing_over_the_same_deliveries_credit_each_payment_once(gateway, sent):
    deliveries = paid(gateway, 40, votes=3)
    # Twelve runs over overlapping messages, in different orders (a duplicate message, a
    # sweeper's re-send); one thread is a payer's callback instead.
    orders = itertools.cycle([deliveries[:25], deliveries[15:][::-1], deliveries[::2], None])
    lock = threading.Lock()

    def one_batch_or_a_callback() -> object:
        with lock:
            batch = next(orders)
        if batch is None:
            return verify_payment.apply(args=(deliveries[-1].reference,)).get()
        return run_batch(batch)

    run_concurrently(one_batch_or_a_callback, times=12)
    verify_payment.apply(args=(deliveries[-1].reference,)).get()
    for delivery in deliveries:  # anything a batch left queued (a cooldown) runs on its own
        if Delivery.objects.get(pk=delivery.pk).status == "queued":
            run(Delivery.objects.get(pk=delivery.pk))

    assert {status for status, _ in statuses(deliveries)} == {"processed"}
    assert_credited_once(deliveries, votes=3)
    assert LedgerEntry.objects.count() == 40


@pytest.mark.django_db(transaction=True)
def test_a_batch_abandoned_by_a_dead_worker_is_settled_once_after_its_lease(
    gateway, broker, tasks_run_eagerly
):
    deliveries = paid(gateway, 5)
    first = deliveries[0]
    # A worker claims a batch and dies before settling (SIGKILL): the rows stay leased.
    Delivery.objects.claim_all(
        [(d.pk, d.generation) for d in deliveries], lease_seconds=60, max_attempts=10
    )
    assert {status for status, _ in statuses(deliveries)} == {"processing"}
    # Their messages, put back and arriving again meanwhile, find them leased and exit.
    assert run_batch(deliveries) == {"skipped": 5}
    assert len(gateway.calls) == 0

    Delivery.objects.update(stale_after=F("stale_after") - timedelta(minutes=2))
    summary = sweep_stuck_deliveries()
    connection.close()

    assert summary["expired_leases"] == 5
    assert statuses(deliveries) == [("processed", "credited")] * 5
    assert_credited_once(deliveries)
    assert len(gateway.calls) == 5
    # The dead worker's generation can no longer finish or requeue anything.
    assert not Delivery.objects.finish(Message(first.pk, 1), status="failed")


@pytest.mark.django_db
def test_the_current_message_claims_its_delivery_beside_an_older_ones_copy(gateway):
    (delivery,) = paid(gateway, 1)
    Delivery.objects.filter(pk=delivery.pk).update(generation=2)

    for order in ([(delivery.pk, 2), (delivery.pk, 1)], [(delivery.pk, 1), (delivery.pk, 2)]):
        Delivery.objects.filter(pk=delivery.pk).update(status="queued")
        claimed = Delivery.objects.claim_all(order, lease_seconds=60, max_attempts=10)
        assert [(d.pk, d.generation, d.status) for d in claimed] == [(delivery.pk, 2, "processing")]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("step", "verify_calls"),
    [("claim_verifies", 0), ("settle_payments", 3)],
    ids=["status read", "settle transaction"],
)
def test_a_batch_cut_off_by_its_soft_time_limit_fails_its_deliveries_with_the_error(
    gateway, step, verify_calls
):
    """A row lock held past the soft time limit, in the status read or the settlement: no
    time is left to settle one by one, so each delivery fails with the error, as alone."""
    deliveries = paid(gateway, 3)

    with mock.patch.object(services, step, side_effect=SoftTimeLimitExceeded()):
        assert run_batch(deliveries) == {"skipped": 0, "failed": 3}

    assert statuses(deliveries) == [("failed", "unexpected error")] * 3
    assert all(d.last_error.startswith("SoftTimeLimitExceeded") for d in Delivery.objects.all())
    assert set(Payment.objects.values_list("status", flat=True)) == {"pending"}
    assert len(gateway.calls) == verify_calls
