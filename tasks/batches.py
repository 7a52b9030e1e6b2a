"""Batched processing of deliveries: the pieces tasks/deliveries.py puts together
(docs/delivery-engine.md#batched-settlement). A worker takes up to SETTLE_BATCH_SIZE delivery
messages into one task run (celery-batches), and settles their charge.success deliveries in
one transaction. Nothing here holds a row lock across a gateway call."""

import contextvars
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from celery.worker.request import Request
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task
from django.conf import settings

from ledger import services
from paystack.errors import GatewayUnavailable
from paystack.types import Verification
from tasks.verification import ask_gateway
from webhooks.models import Delivery

logger = logging.getLogger(__name__)

CHARGE_SUCCESS = "charge.success"
# Verify calls one batch makes at a time. Each pool thread keeps its own keep-alive session
# to the gateway (paystack/client.py), so a warm worker reuses these connections.
VERIFY_THREADS = 8


def settles_together(delivery: Delivery) -> bool:
    """Whether a claimed delivery joins its batch's one settlement: a charge.success being
    processed (a claim past the attempt cap has already failed it)."""
    return delivery.event == CHARGE_SUCCESS and delivery.status == Delivery.Status.PROCESSING


@dataclass
class Sorted:
    """A batch's deliveries by what the payment's state says about them, before any call."""

    not_ours: list[Delivery] = field(default_factory=list)
    settled: list[Delivery] = field(default_factory=list)  # no verdict can change it
    moments_ago: list[tuple[Delivery, float]] = field(default_factory=list)  # seconds left
    to_verify: dict[str, tuple[Delivery, services.VerifyClaim]] = field(default_factory=dict)


def sort_by_payment(deliveries: list[Delivery]) -> Sorted:
    """Read every payment's status and take the verify claims of those a verdict can still
    change, in one statement (ledger.services.claim_verifies).

    A second delivery of a reference already in the batch is treated as verified moments
    ago: the first one's answer settles the payment, and it looks again after the cooldown.
    """
    claims = services.claim_verifies(references=sorted({d.reference for d in deliveries}))
    batch = Sorted()
    for delivery in deliveries:
        reference = delivery.reference
        if reference not in claims:
            batch.not_ours.append(delivery)
            continue
        claim = claims[reference]
        if claim is None:
            batch.settled.append(delivery)
        elif claim.won and reference not in batch.to_verify:
            batch.to_verify[reference] = (delivery, claim)
        else:
            cooldown = float(settings.VERIFY_COOLDOWN_SECONDS)
            batch.moments_ago.append((delivery, claim.seconds_left if not claim.won else cooldown))
    return batch


Answer = Verification | Exception


def verify_all(references: list[str]) -> dict[str, Answer]:
    """The gateway's answer for each reference, asked concurrently (VERIFY_THREADS at a time),
    or the error that call raised.

    The task must end before its lease does. Calls not started while two gateway timeouts of
    the task's soft time limit are left are never made, and count as an outage (retried
    later); the calls under way then have one more timeout to answer. A call that was made
    is not cut short: its answer settles the payment, so a slow gateway is never asked
    twice for one payment."""
    if len(references) == 1:
        return {references[0]: _answer(references[0])}
    # Each call runs in a copy of this context, so its span (tracing) sits inside the run's.
    futures = {
        reference: _verifier().submit(contextvars.copy_context().run, _answer, reference)
        for reference in references
    }
    timeout = settings.PAYSTACK_TIMEOUT
    wait(futures.values(), timeout=settings.TASK_SOFT_TIME_LIMIT - 2 * timeout)
    for future in futures.values():
        future.cancel()  # only those not started; a finished or running one is left as is
    wait(futures.values(), timeout=timeout)
    return {
        reference: future.result()
        if future.done() and not future.cancelled()
        else GatewayUnavailable(f"verify {reference}: not asked in time")
        for reference, future in futures.items()
    }


def _answer(reference: str) -> Answer:
    try:
        return ask_gateway(reference)
    except Exception as exc:  # handed to the caller, which sorts it as the single path does
        return exc


_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _verifier() -> ThreadPoolExecutor:
    """This process's verify threads, made on first use: a prefork pool process makes its
    own after the fork (threads do not survive one)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(VERIFY_THREADS, "tally-verify"))
        return _pool[1]


class MessageBatches(Batches):  # type: ignore[misc]  # celery-batches ships no types
    """celery-batches' task class (many messages, one task run), flushed the way tally's
    delivery task runs: under its time limits, each message acknowledged only once the run
    has ended (after its commit); a run the pool lost (a killed child, the hard time limit)
    puts its messages back, and their claims find what the lost run left leased."""

    def flush(self, requests: Sequence[Request]) -> object:
        def acknowledge(_result: object) -> None:
            for request in requests:
                request.acknowledge()

        def put_back(_error: object) -> None:
            for request in requests:
                request.reject(requeue=True)

        simple = [SimpleRequest.from_request(request) for request in requests]
        return self._pool.apply_async(
            apply_batches_task,
            (self, (simple,), 0, None),
            callback=acknowledge,
            error_callback=put_back,
            soft_timeout=settings.TASK_SOFT_TIME_LIMIT,
            timeout=settings.TASK_TIME_LIMIT,
        )


def messages_of(requests: Sequence[SimpleRequest]) -> list[tuple[int, int | None]]:
    """The (delivery id, generation) each buffered message names. A message sent before
    generations existed names none, and claims whatever generation the delivery has."""
    named: list[tuple[int, int | None]] = []
    for request in requests:
        try:
            delivery_id, *rest = request.args
            generation = rest[0] if rest else None
            named.append((int(delivery_id), None if generation is None else int(generation)))
        except (TypeError, ValueError):
            # Not one of ours (tally sends only these): drop it rather than fail the batch.
            logger.error(
                "message names no delivery; dropped", extra={"message_args": repr(request.args)}
            )
    return named
