"""Helpers shared by the tests."""

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import responses
from django.conf import settings
from django.db import connection
from prometheus_client import REGISTRY

from ledger.models import Contestant
from paystack.types import Verification

Result = TypeVar("Result")


def run_concurrently(work: Callable[[], Result], *, times: int) -> list[Result]:
    """Run `work` in `times` threads released together; re-raise the first error."""
    barrier = threading.Barrier(times)
    results: list[Result] = []
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            barrier.wait()
            results.append(work())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=runner) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def success_for(payment, **changes) -> Verification:
    """The verification the gateway gives for a paid payment, with optional differences."""
    values = {
        "reference": payment.reference,
        "status": "success",
        "amount": payment.amount,
        "currency": payment.currency,
        "gateway_id": 4_099_260_516,
    }
    values.update(changes)
    return Verification(**values)


def verify_answer(payment, **changes) -> dict:
    """The JSON body of Paystack's verify API for a payment, paid unless changed."""
    data = {
        "id": 4_099_260_516,
        "domain": "test",
        "status": "success",
        "reference": payment.reference,
        "amount": payment.amount,
        "requested_amount": payment.amount,
        "currency": payment.currency,
        "paid_at": "2025-03-14T18:02:11.000Z",
        "customer": {"email": payment.email},
        "metadata": {"payment": payment.pk},
    }
    data.update(changes)
    return {"status": True, "message": "Verification successful", "data": data}


def wait_until(condition: Callable[[], object], *, timeout: float, interval: float = 0.1) -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {condition.__name__}")
        time.sleep(interval)


WEBHOOK_URL = "/webhooks/paystack/"
INITIALIZE_URL = "http://paystack.test/transaction/initialize"  # PAYSTACK_BASE_URL in tests
CHECKOUT_URL = "https://checkout.paystack.test/ac_test_1"


def paystack_signature(body: bytes, key: str) -> str:
    """What Paystack puts in x-paystack-signature: HMAC-SHA512 of the raw bytes, lowercase hex.

    Computed here with hmac directly rather than with webhooks.signature, so the endpoint
    is checked against the gateway's rule and not against itself.
    """
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


def charge_success(reference: str, *, gateway_id: int = 4_099_260_516, **data: Any) -> dict:
    """A charge.success event (docs/paystack.md §3), trimmed; `data` adds or overrides fields."""
    fields = {
        "id": gateway_id,
        "domain": "test",
        "status": "success",
        "reference": reference,
        "amount": 50000,
        "currency": "NGN",
        "paid_at": "2025-03-14T18:02:11.000Z",
        "customer": {"email": "voter@example.com"},
        **data,
    }
    return {"event": "charge.success", "data": fields}


def event_bytes(event: dict, **dumps_options: Any) -> bytes:
    """An event as the UTF-8 bytes a sender would post (non-ASCII left as is)."""
    return json.dumps(event, ensure_ascii=False, **dumps_options).encode()


def verify_url(reference: str) -> str:
    """Where the client asks about a reference: GET /transaction/verify/<reference>."""
    return f"{settings.PAYSTACK_BASE_URL}/transaction/verify/{reference}"


def votes_of(contestant_id: int) -> int:
    """A contestant's total as the API reads it: the sum of its vote shards."""
    return Contestant.objects.with_votes().get(pk=contestant_id).votes


def counted(name: str, **labels: str) -> float:
    """A counter's value in this process (0 before its first increment)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def says(paystack, payment, **changes: object) -> None:
    """The gateway's verify answer for this payment: paid, unless `changes` say otherwise."""
    paystack.add(
        responses.GET, verify_url(payment.reference), json=verify_answer(payment, **changes)
    )
