"""Scale-out: 2 web processes, 3 workers and 2 beats at once on one PostgreSQL and one broker."""

import json

import pytest
import requests
from django.utils import timezone

from devstack.processes import free_port
from tests.e2e.test_pipeline import all_credited, assert_exactly_once, make_payments
from tests.factories import ContestantFactory, DeliveryFactory
from tests.helpers import paystack_signature, wait_until
from webhooks.models import Delivery

pytestmark = pytest.mark.e2e


def test_two_webs_three_workers_two_beats_credit_each_payment_once(stack, sandbox):
    # Leases long enough that no task on this busy 2-core box outlives its own: a lease that
    # expires mid-task is retaken by design (guarantee 6), which would verify twice.
    stack.env["STUCK_AFTER_SECONDS"] = "20"
    first_web = stack.web(port=int(stack.env["WEB_PORT"]), name="web-1")
    second_web = stack.web(port=free_port(), name="web-2")
    payments = make_payments(60, [ContestantFactory() for _ in range(2)])
    sandbox.paid(payments)
    # Ten deliveries the broker never got: both beats' sweepers race to enqueue them.
    swept = payments[:10]
    for payment in swept:
        DeliveryFactory(payment=payment, status="received", received_at=timezone.now())
    for name in ("worker-1", "worker-2", "worker-3"):
        stack.worker(name, concurrency=2)
    stack.beat("beat-1")
    stack.beat("beat-2")

    key = stack.env["PAYSTACK_SECRET_KEY"]
    transactions = paid_transactions(sandbox.url, key)
    for payment in payments[10:]:
        sandbox.deliver(payment.reference, times=2)  # to web-1, twice
        event = {"event": "charge.success", "data": transactions[payment.reference]}
        body = json.dumps(event).encode()
        response = requests.post(
            f"{second_web}/webhooks/paystack/",
            data=body,
            headers={"x-paystack-signature": paystack_signature(body, key)},
            timeout=10,
        )
        assert response.status_code == 200

    wait_until(all_credited(payments), timeout=60)
    assert_exactly_once(payments)
    assert first_web != second_web
    assert Delivery.objects.count() == 60
    verifies = sandbox.stats()["verify_by_reference"]
    # One verify per payment: no doubled enqueue by the two beats, no doubled work.
    assert {verifies.get(p.reference) for p in payments} == {1}


def paid_transactions(sandbox_url: str, key: str) -> dict[str, dict]:
    """The gateway's data for every paid transaction, read from its list API (not verify,
    whose calls the test counts)."""
    answer = requests.get(
        f"{sandbox_url}/transaction",
        params={"perPage": "1000", "status": "success"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    return {transaction["reference"]: transaction for transaction in answer["data"]}
