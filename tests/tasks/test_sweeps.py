"""The sweeper against the real Redis broker: what it requeues, and what it leaves alone."""

import base64
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from tasks.sweeps import sweep_stuck_deliveries
from tests.factories import DeliveryFactory
from tests.helpers import run_concurrently
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db(transaction=True)

LONG_AGO = timedelta(minutes=10)


def queued_ids(broker) -> list[int]:
    """The delivery ids of the process_delivery messages waiting in the broker."""
    messages = [json.loads(raw) for raw in broker.lrange("celery", 0, -1)]
    # A Celery message body is base64 of [args, kwargs, embed]; args is (delivery_id,).
    return sorted(json.loads(base64.b64decode(m["body"]))[0][0] for m in messages)


def test_received_deliveries_are_enqueued_once_the_broker_is_back(broker):
    delivery = DeliveryFactory(status="received")

    summary = sweep_stuck_deliveries()

    assert summary["received"] == 1
    assert queued_ids(broker) == [delivery.pk]
    delivery.refresh_from_db()
    assert delivery.status == "queued"
    assert delivery.stale_after > timezone.now()


def test_a_processing_delivery_whose_lease_expired_is_requeued(broker):
    dead = DeliveryFactory(status="processing", stale_after=timezone.now() - LONG_AGO)
    alive = DeliveryFactory(status="processing", stale_after=timezone.now() + LONG_AGO)

    sweep_stuck_deliveries()

    assert queued_ids(broker) == [dead.pk]
    assert Delivery.objects.get(pk=alive.pk).status == "processing"


def test_stale_queued_deliveries_are_requeued_only_when_the_broker_lost_messages(broker):
    stale = [DeliveryFactory(stale_after=timezone.now() - LONG_AGO) for _ in range(3)]
    for _ in range(3):  # a backlog: as many messages waiting as stale deliveries
        broker.rpush("celery", b"{}")

    backlog = sweep_stuck_deliveries()

    assert backlog["requeued_queued"] == 0
    assert broker.llen("celery") == 3

    broker.delete("celery")  # the broker lost them (e.g. Redis restarted without persistence)
    lost = sweep_stuck_deliveries()

    assert lost["requeued_queued"] == 3
    assert queued_ids(broker) == sorted(d.pk for d in stale)


def test_fresh_and_finished_deliveries_are_left_alone(broker):
    DeliveryFactory(stale_after=timezone.now() + LONG_AGO)
    DeliveryFactory(status="processed", stale_after=timezone.now() - LONG_AGO)
    DeliveryFactory(status="failed", stale_after=timezone.now() - LONG_AGO)

    summary = sweep_stuck_deliveries()

    assert summary == {
        "received": 0,
        "expired_leases": 0,
        "stale_queued": 0,
        "requeued_queued": 0,
        "broker_waiting": 0,
    }
    assert broker.llen("celery") == 0


def test_two_sweepers_at_once_enqueue_each_delivery_once(broker):
    received = [DeliveryFactory(status="received") for _ in range(40)]

    run_concurrently(sweep_stuck_deliveries, times=2)

    assert queued_ids(broker) == sorted(d.pk for d in received)
