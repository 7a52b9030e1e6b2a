"""Beat's sweeper: send again exactly the delivery messages that were never sent or were lost."""

import logging

from celery import shared_task
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Now

from tasks.broker import Held, held_delivery_messages
from tasks.deliveries import queue_again
from tasks.locks import single_run
from webhooks.models import Delivery, Message

logger = logging.getLogger(__name__)

# At most this many messages a sweep: a huge loss is sent again over a few sweeps, never in
# one burst that the broker or the workers choke on.
SWEEP_BATCH = 1000


@shared_task(name="tally.sweep_stuck_deliveries", acks_late=True)
def sweep_stuck_deliveries() -> dict[str, int]:
    """Send the deliveries whose message the broker never got, or lost, again; one sweep at a
    time, whichever beat starts it.

    1. Ask the broker which delivery messages it holds (waiting, and taken by workers), before
       any row is locked: no network call under a lock.
    2. `received`: the broker was down when the delivery was stored; send it.
    3. `processing` past its lease: the worker died (SIGKILL, OOM, a lost host); send it.
    4. `queued` and overdue, with no message of its current generation in the broker: lost;
       send it. Where the broker cannot say which messages wait (RabbitMQ), only as many of
       the oldest as the waiting count falls short of the overdue ones, and none while a
       backlog covers them. A wrong guess costs one conditional UPDATE when the old message
       arrives (its generation is no longer current), never a gateway call.
    Every delivery sent again gets a new generation (tasks.deliveries.queue_again).
    """
    with single_run("tally.sweep") as taken:
        if not taken:
            return {}
        held = held_delivery_messages()
        with transaction.atomic():
            received = _locked(Delivery.objects.filter(status=Delivery.Status.RECEIVED))
            expired = _locked(
                Delivery.objects.filter(status=Delivery.Status.PROCESSING, stale_after__lt=Now())
            )
            overdue = list(Delivery.objects.lost_candidates().values_list("pk", "generation"))
            queued = [] if held.identified_all else _queued_messages()
            lost = _locked(
                Delivery.objects.filter(
                    pk__in=_lost(overdue, held, queued)[:SWEEP_BATCH],
                    status=Delivery.Status.QUEUED,
                )
            )
            queue_again(received + expired + lost, by="sweeper")
    summary = {
        "received": len(received),
        "expired_leases": len(expired),
        "overdue_queued": len(overdue),
        "lost_queued": len(lost),
        "broker_unidentified": held.unidentified,
    }
    if received or expired or lost:
        logger.info("sweep sent deliveries again", extra=summary)
    return summary


def _locked(deliveries: QuerySet[Delivery]) -> list[int]:
    """Lock up to SWEEP_BATCH of these rows; skip_locked: a worker claiming one now, or a
    replay, keeps it, and the rows this sweep takes are its own until it commits."""
    rows = deliveries.select_for_update(skip_locked=True).order_by("pk")
    return list(rows.values_list("pk", flat=True)[:SWEEP_BATCH])


def _queued_messages() -> list[Message]:
    """The current message every queued delivery should have somewhere in the broker."""
    rows = Delivery.objects.filter(status=Delivery.Status.QUEUED).values_list("pk", "generation")
    return [Message(pk, generation) for pk, generation in rows]


def _lost(overdue: list[tuple[int, int]], held: Held, queued: list[Message]) -> list[int]:
    """The overdue deliveries (oldest first) whose current message the broker does not hold.

    Where the broker could not say which messages wait (RabbitMQ, or a Redis queue too long to
    read), it said how many: every queued delivery should have one current message, waiting or
    held by a worker, so the shortfall is how many were lost, and, the queue being first in
    first out, they are the oldest of the overdue. Messages of older generations still waiting
    make the shortfall smaller, never larger: a guess errs toward sending fewer.
    """
    missing = [pk for pk, generation in overdue if not held.holds(Message(pk, generation))]
    if held.identified_all:
        return missing
    held_by_workers = sum(held.holds(message) for message in queued)
    shortfall = len(queued) - held.unidentified - held_by_workers
    return missing[: max(shortfall, 0)]
