"""The sweeper against the real Redis broker: it sends again exactly the messages that were
never sent or were lost, and leaves every message the broker holds alone."""

import base64
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tasks.deliveries import process_deliveries, process_delivery
from tasks.sweeps import sweep_stuck_deliveries
from tests.factories import DeliveryFactory
from tests.helpers import run_concurrently
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db(transaction=True)

LONG_AGO = timedelta(minutes=10)


def messages_in(broker) -> list[tuple[int, int]]:
    """(delivery id, generation) of every delivery message waiting in the broker."""
    bodies = [json.loads(raw)["body"] for raw in broker.lrange("celery", 0, -1)]
    # A Celery message body is base64 of [args, kwargs, embed]; args is (delivery_id, gen).
    return sorted(tuple(json.loads(base64.b64decode(body))[0]) for body in bodies)


def overdue(**fields) -> Delivery:
    """A queued delivery whose message should have been taken long ago."""
    return DeliveryFactory(stale_after=timezone.now() - LONG_AGO, **fields)


def sent_now(delivery: Delivery) -> None:
    """Its current message, waiting in the broker."""
    process_deliveries.delay(delivery.pk, delivery.generation)


def taken_by_a_worker(broker, *, seconds_ago: float) -> None:
    """The waiting message, taken by a worker `seconds_ago` and not acknowledged: Redis keeps
    it in `unacked`, and when in `unacked_index`."""
    raw = broker.rpop("celery")
    broker.hset("unacked", "tag-1", json.dumps([json.loads(raw), "celery", "celery"]))
    broker.zadd("unacked_index", {"tag-1": time.time() - seconds_ago})


def test_received_deliveries_are_sent_once_the_broker_is_back(broker):
    delivery = DeliveryFactory(status="received")

    summary = sweep_stuck_deliveries()

    assert summary["received"] == 1
    assert messages_in(broker) == [(delivery.pk, 2)]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.generation) == ("queued", 2)
    assert delivery.stale_after > timezone.now()


def test_a_processing_delivery_whose_lease_expired_is_sent_again(broker):
    dead = DeliveryFactory(status="processing", stale_after=timezone.now() - LONG_AGO)
    alive = DeliveryFactory(status="processing", stale_after=timezone.now() + LONG_AGO)

    sweep_stuck_deliveries()

    assert messages_in(broker) == [(dead.pk, 2)]
    assert Delivery.objects.get(pk=alive.pk).status == "processing"


def test_only_the_lost_message_of_a_backlog_is_sent_again(broker):
    backlog = [overdue() for _ in range(5)]
    for delivery in backlog:
        sent_now(delivery)
    broker.lrem("celery", 1, broker.lrange("celery", 0, -1)[2])  # one from the middle
    remaining = messages_in(broker)
    lost = next(d for d in backlog if (d.pk, d.generation) not in remaining)

    summary = sweep_stuck_deliveries()

    assert (summary["overdue_queued"], summary["lost_queued"]) == (5, 1)
    assert len(messages_in(broker)) == 5  # 4 left alone + 1 sent again
    assert (lost.pk, 2) in messages_in(broker)
    again = sweep_stuck_deliveries()
    assert again["lost_queued"] == 0  # the broker holds every current message now


def test_a_message_a_worker_holds_unacknowledged_is_not_lost(broker):
    delivery = overdue()
    sent_now(delivery)
    taken_by_a_worker(broker, seconds_ago=1)  # prefetched, or in a batch's buffer

    summary = sweep_stuck_deliveries()

    assert summary["lost_queued"] == 0
    assert messages_in(broker) == []


def test_a_message_taken_by_a_worker_that_died_is_lost_after_the_lease(broker, settings):
    delivery = overdue()
    sent_now(delivery)
    taken_by_a_worker(broker, seconds_ago=settings.STUCK_AFTER_SECONDS + 5)

    summary = sweep_stuck_deliveries()

    assert summary["lost_queued"] == 1
    assert messages_in(broker) == [(delivery.pk, delivery.generation + 1)]


def test_a_retry_a_worker_holds_until_its_time_is_not_lost_however_long_ago(broker, settings):
    delivery = overdue()
    process_delivery.apply_async((delivery.pk, delivery.generation), countdown=600)
    taken_by_a_worker(broker, seconds_ago=settings.STUCK_AFTER_SECONDS + 5)

    summary = sweep_stuck_deliveries()

    assert summary["lost_queued"] == 0


def test_a_message_of_an_older_generation_does_not_count(broker):
    delivery = overdue(generation=3)
    process_delivery.delay(delivery.pk, 2)  # a late copy from before a retry or a replay

    summary = sweep_stuck_deliveries()

    assert summary["lost_queued"] == 1
    assert (delivery.pk, 4) in messages_in(broker)


def test_a_retry_waiting_out_its_delay_is_not_overdue(broker):
    DeliveryFactory(
        stale_after=timezone.now() - LONG_AGO, not_before=timezone.now() + timedelta(minutes=5)
    )

    assert sweep_stuck_deliveries()["lost_queued"] == 0
    assert broker.llen("celery") == 0


def test_fresh_and_finished_deliveries_are_left_alone(broker):
    DeliveryFactory(stale_after=timezone.now() + LONG_AGO)
    DeliveryFactory(status="processed", stale_after=timezone.now() - LONG_AGO)
    DeliveryFactory(status="failed", stale_after=timezone.now() - LONG_AGO)

    summary = sweep_stuck_deliveries()

    assert summary == {
        "received": 0,
        "expired_leases": 0,
        "overdue_queued": 0,
        "lost_queued": 0,
        "broker_unidentified": 0,
    }
    assert broker.llen("celery") == 0


def test_two_sweepers_at_once_send_each_delivery_once(broker):
    received = [DeliveryFactory(status="received") for _ in range(40)]

    run_concurrently(sweep_stuck_deliveries, times=2)

    assert messages_in(broker) == sorted((d.pk, 2) for d in received)
