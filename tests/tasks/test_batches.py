"""Batched settlement (docs/delivery-engine.md#batched-settlement): one task settles many
charge.success deliveries, each exactly once, each with its own outcome."""

import itertools
import threading
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from django.db import connection
from django.db.models import F
from django.utils import timezone

from ledger import services
from ledger.models import LedgerEntry, Payment, PaymentTransition
from tasks.deliveries import process_delivery
from tasks.sweeps import sweep_stuck_deliveries
from tasks.verification import verify_payment
from tests.factories import ContestantFactory, DeliveryFactory, PaymentFactory
from tests.helpers import counted, run_concurrently, says, verify_answer, verify_url, votes_of
from webhooks.models import Delivery, Message


@pytest.fixture(autouse=True)
def batches_of_32(settings):
    settings.SETTLE_BATCH_SIZE = 32
    settings.SETTLE_BATCH_WAIT_MS = 0


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
def test_one_task_settles_a_batch_each_once_with_one_verify_call_each(gateway):
    deliveries = paid(gateway, 6, votes=2)
    credited_before = counted("tally_payments_settled_total", outcome="credited")
    votes_before = counted("tally_votes_credited_total")

    assert run(deliveries[0]) == "processed"

    assert statuses(deliveries) == [("processed", "credited")] * 6
    assert_credited_once(deliveries, votes=2)
    assert sorted(call.request.url for call in gateway.calls) == sorted(
        verify_url(d.reference) for d in deliveries
    )
    assert counted("tally_payments_settled_total", outcome="credited") == credited_before + 6
    assert counted("tally_votes_credited_total") == votes_before + 12
    # Each co-claimed delivery was claimed once, under its own generation.
    assert {(d.attempts, d.generation) for d in Delivery.objects.all()} == {(1, 1)}


@pytest.mark.django_db
def test_a_co_claimed_deliverys_own_message_exits_without_a_gateway_call(gateway):
    first, second, third = paid(gateway, 3)
    run(first)
    calls = len(gateway.calls)

    assert run(second) == "skipped"
    assert run(third, third.generation) == "skipped"
    assert len(gateway.calls) == calls
    assert statuses([second, third]) == [("processed", "credited")] * 2


@pytest.mark.django_db
def test_a_co_claimed_delivery_leased_by_a_batch_is_skipped_by_its_own_message(gateway):
    first, second = paid(gateway, 2)
    Delivery.objects.claim(first.pk, 1, lease_seconds=60, max_attempts=10)
    co_claimed = Delivery.objects.claim_more(
        event="charge.success", limit=5, lease_seconds=60, max_attempts=10
    )
    assert [d.pk for d in co_claimed] == [second.pk]

    assert run(second) == "skipped"
    assert len(gateway.calls) == 0


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
    ]

    assert run(good[0]) == "processed"

    assert statuses(good) == [("processed", "credited")] * 3
    assert_credited_once(good)
    assert statuses(others) == [
        ("processed", "flagged"),
        ("queued", ""),
        ("failed", "gateway refused"),
        ("processed", "already_settled"),
        ("ignored", "reference is not ours"),
    ]
    assert Payment.objects.get(pk=mismatch.pk).status == "flagged"
    assert Payment.objects.get(pk=down.pk).status == "pending"
    # Only payments a verdict can change were asked about, each once.
    assert len(gateway.calls) == 6
    # The outage goes the retry path: its lease back under a new generation, a new message
    # of that generation sent, and its verify claim given back.
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
def test_an_outage_for_the_first_delivery_retries_it_through_its_own_task(gateway, sent):
    first, *rest = paid(gateway, 3)
    gateway.replace(responses.GET, verify_url(first.reference), status=503, json={})
    retries = []

    def record_retry(*args: Any, **kwargs: Any) -> Any:
        retries.append(tuple(kwargs["args"]))
        raise RuntimeError("stop after the first retry")

    with mock.patch.object(process_delivery, "retry", side_effect=record_retry):
        process_delivery.apply(args=(first.pk, 1))

    assert retries == [(first.pk, 2)]
    assert statuses(rest) == [("processed", "credited")] * 2


@pytest.mark.django_db
def test_a_payment_verified_moments_ago_is_looked_at_again_after_the_cooldown(
    gateway, sent, settings
):
    settings.VERIFY_COOLDOWN_SECONDS = 30
    first, second = paid(gateway, 2)
    services.claim_verify(reference=second.reference)  # the callback asked just now

    run(first)

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
        assert run(deliveries[0]) == "processed"

    good = [d for d in deliveries if d.reference != poison]
    assert statuses(good) == [("processed", "credited")] * 3
    assert_credited_once(good)
    failed = Delivery.objects.get(pk=deliveries[2].pk)
    assert (failed.status, failed.outcome) == ("failed", "unexpected error")
    assert "a row the database refuses" in failed.last_error
    assert Payment.objects.get(reference=poison).status == "pending"
    assert len(gateway.calls) == 4  # the answers were not asked for again


@pytest.mark.django_db
def test_a_delivery_at_the_attempt_cap_is_not_co_claimed(gateway, settings):
    settings.MAX_DELIVERY_ATTEMPTS = 3
    first, capped = paid(gateway, 2)
    Delivery.objects.filter(pk=capped.pk).update(attempts=3)

    run(first)

    assert statuses([capped]) == [("queued", "")]
    assert run(capped) == "failed"
    assert len(gateway.calls) == 1


@pytest.mark.django_db
def test_batch_size_one_settles_each_delivery_on_its_own(gateway, settings):
    settings.SETTLE_BATCH_SIZE = 1
    first, second = paid(gateway, 2)

    run(first)

    assert statuses([first, second]) == [("processed", "credited"), ("queued", "")]


@pytest.mark.django_db
def test_a_retry_not_yet_due_is_not_co_claimed(gateway):
    first, waiting = paid(gateway, 2)
    Delivery.objects.filter(pk=waiting.pk).update(not_before=timezone.now() + timedelta(minutes=5))

    run(first)

    assert statuses([waiting]) == [("queued", "")]


# --- races and recovery, on real transactions -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_batches_racing_over_the_same_deliveries_credit_each_payment_once(gateway, sent):
    deliveries = paid(gateway, 40, votes=3)
    firsts = itertools.cycle(deliveries[::5])
    lock = threading.Lock()

    def one_batch_or_a_callback() -> object:
        with lock:
            first = next(firsts)
        if first == deliveries[35]:  # some threads are the payers' callbacks instead
            return verify_payment.apply(args=(deliveries[-1].reference,)).get()
        return process_delivery.apply(args=(first.pk, first.generation)).get()

    run_concurrently(one_batch_or_a_callback, times=12)
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
    Delivery.objects.claim(first.pk, 1, lease_seconds=60, max_attempts=10)
    Delivery.objects.claim_more(event="charge.success", limit=31, lease_seconds=60, max_attempts=10)
    assert {status for status, _ in statuses(deliveries)} == {"processing"}
    # Their own messages, arriving meanwhile, find them leased and exit.
    assert {run(d) for d in deliveries[1:]} == {"skipped"}
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
