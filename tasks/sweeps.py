"""Beat's sweeper: find deliveries whose message was lost and enqueue them again."""

import logging

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from tasks.broker import queue_depth, queue_names
from tasks.deliveries import queue_again
from webhooks.models import Delivery

logger = logging.getLogger(__name__)

SWEEP_BATCH = 1000


@shared_task(name="tally.sweep_stuck_deliveries", acks_late=True)
def sweep_stuck_deliveries() -> dict[str, int]:
    """Requeue deliveries the broker never got or lost; safe to run from two beats at once.

    - `received`: the broker was down when the delivery was stored; enqueue it now.
    - `processing` past its lease: the worker died mid-task (SIGKILL, OOM, lost host).
    - `queued` past STUCK_AFTER_SECONDS: only when the broker holds fewer messages than there
      are such deliveries, i.e. some message was lost. A long backlog is left alone, so it
      never multiplies messages, gateway calls or work.
    """
    now = timezone.now()
    # The broker is asked before any row is locked (no network call under a lock), and only
    # when there are stale queued deliveries to judge.
    stale = Delivery.objects.filter(status=Delivery.Status.QUEUED, stale_after__lt=now)
    waiting = sum(queue_depth(queue) for queue in queue_names()) if stale.exists() else 0
    with transaction.atomic():
        # skip_locked: a second sweeper running now passes over the rows this one holds,
        # and once we commit the new stale_after hides them from it.
        stuck = Delivery.objects.select_for_update(skip_locked=True).filter(
            status__in=Delivery.UNFINISHED
        )
        received = list(
            stuck.filter(status=Delivery.Status.RECEIVED).values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        expired = list(
            stuck.filter(status=Delivery.Status.PROCESSING, stale_after__lt=now).values_list(
                "pk", flat=True
            )[:SWEEP_BATCH]
        )
        stale_queued = list(
            stuck.filter(status=Delivery.Status.QUEUED, stale_after__lt=now).values_list(
                "pk", flat=True
            )[:SWEEP_BATCH]
        )
        lost_queued = stale_queued if waiting < len(stale_queued) else []
        to_enqueue = received + expired + lost_queued
        queue_again(to_enqueue)
    summary = {
        "received": len(received),
        "expired_leases": len(expired),
        "stale_queued": len(stale_queued),
        "requeued_queued": len(lost_queued),
        "broker_waiting": waiting,
    }
    if to_enqueue or stale_queued:
        logger.info("sweep requeued deliveries", extra=summary)
    return summary
