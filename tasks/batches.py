"""Batched settlement of charge.success deliveries: the pieces tasks/deliveries.py puts
together (docs/delivery-engine.md#batched-settlement). Nothing here holds a row lock across a
gateway call."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from django.conf import settings

from ledger import services
from paystack.errors import GatewayUnavailable
from paystack.types import Verification
from tasks.verification import ask_gateway
from webhooks.models import Delivery

CHARGE_SUCCESS = "charge.success"
# Verify calls one batch makes at a time. Each pool thread keeps its own keep-alive session
# to the gateway (paystack/client.py), so a warm worker reuses these connections.
VERIFY_THREADS = 8
# How often a worker waiting for more deliveries (SETTLE_BATCH_WAIT_MS) looks again.
_WAIT_STEP_SECONDS = 0.005


def batching(delivery: Delivery) -> bool:
    """Whether this claimed delivery settles in a batch (SETTLE_BATCH_SIZE > 1)."""
    return (
        settings.SETTLE_BATCH_SIZE > 1
        and delivery.event == CHARGE_SUCCESS
        and delivery.status == Delivery.Status.PROCESSING
    )


def claim_others(first: Delivery) -> list[Delivery]:
    """Up to SETTLE_BATCH_SIZE - 1 further due charge.success deliveries, claimed for the
    batch `first` starts; found fewer, look again until SETTLE_BATCH_WAIT_MS has passed."""
    wanted = settings.SETTLE_BATCH_SIZE - 1
    deadline = time.monotonic() + settings.SETTLE_BATCH_WAIT_MS / 1000
    others: list[Delivery] = []
    while True:
        others += Delivery.objects.claim_more(
            event=CHARGE_SUCCESS,
            limit=wanted - len(others),
            lease_seconds=settings.STUCK_AFTER_SECONDS,
            max_attempts=settings.MAX_DELIVERY_ATTEMPTS,
        )
        if len(others) >= wanted or time.monotonic() >= deadline:
            return others
        time.sleep(_WAIT_STEP_SECONDS)


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
    futures = {reference: _verifier().submit(_answer, reference) for reference in references}
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
