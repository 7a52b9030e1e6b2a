"""RATE_LIMIT_PAYMENTS per client address on POST /api/payments/ and the callback: 429 with
Retry-After past it, nothing written and no gateway call. Counted in the real Redis."""

import logging
from typing import Any
from unittest import mock

import pytest
import responses
from django.test import Client

from ledger.models import Payment
from tasks.verification import verify_payment
from tests.factories import PaymentFactory

pytestmark = pytest.mark.django_db

CLIENT_IP = "203.0.113.9"
OTHER_IP = "198.51.100.7"
PROXY_IP = "10.0.0.2"
# An hour-long window: the test cannot straddle two windows and see its count reset.
LIMIT = "3/h"


@pytest.fixture(autouse=True)
def low_limit(settings):
    settings.RATE_LIMIT_PAYMENTS = LIMIT


@pytest.fixture
def paystack():
    """No gateway URL is stubbed: any call would fail the request and show in `calls`."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock_gateway:
        yield mock_gateway


def order(client: Client, **extra: Any):
    """An order the API refuses (no such contestant): counted, but it writes nothing."""
    body = '{"contestant": 999999, "votes": 1, "email": "fan@example.com"}'
    return client.post("/api/payments/", body, content_type="application/json", **extra)


def assert_too_many(response, *, json: bool) -> None:
    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 3600
    if json:
        assert response.json() == {
            "error": f"too many requests from your address; try again in {wait} s"
        }
    else:
        assert f"wait {wait} second" in response.content.decode()


def test_the_api_answers_429_with_retry_after_past_the_limit(paystack):
    client = Client()

    answers = [order(client, REMOTE_ADDR=CLIENT_IP).status_code for _ in range(3)]
    refused = order(client, REMOTE_ADDR=CLIENT_IP)

    assert answers == [400, 400, 400]
    assert_too_many(refused, json=True)
    assert not Payment.objects.exists()
    assert len(paystack.calls) == 0
    assert order(client, REMOTE_ADDR=OTHER_IP).status_code == 400  # its own count


def test_the_callback_answers_429_with_retry_after_and_asks_for_no_verify():
    payment = PaymentFactory()
    url = f"/payments/callback/?reference={payment.reference}"
    client = Client()

    with mock.patch.object(verify_payment, "delay") as delay:
        answers = [client.get(url, REMOTE_ADDR=CLIENT_IP).status_code for _ in range(3)]
        refused = client.get(url, REMOTE_ADDR=CLIENT_IP)

    assert answers == [302, 302, 302]
    assert_too_many(refused, json=False)
    assert delay.call_count == 3
    assert client.get(url, REMOTE_ADDR=OTHER_IP).status_code == 302


def test_the_api_and_the_callback_count_separately():
    client = Client()
    for _ in range(3):
        order(client, REMOTE_ADDR=CLIENT_IP)

    response = client.get("/payments/callback/?reference=tly-unknown", REMOTE_ADDR=CLIENT_IP)

    assert response.status_code == 404


def test_behind_a_proxy_a_client_cannot_escape_by_writing_its_own_entries(settings, paystack):
    settings.PROXY_HOPS = 1
    client = Client()

    answers = [
        order(client, REMOTE_ADDR=PROXY_IP, HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, {CLIENT_IP}")
        for n in range(4)
    ]

    assert [a.status_code for a in answers] == [400, 400, 400, 429]


def test_a_forwarded_chain_shorter_than_the_hops_shares_one_bucket_never_its_own_entry(
    settings, paystack
):
    """Regression: the key fell back to the left-most entry, which the client writes: a new
    spoofed address per request escaped the limit."""
    settings.PROXY_HOPS = 2
    client = Client()

    answers = [
        order(client, REMOTE_ADDR=PROXY_IP, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}") for n in range(4)
    ]

    assert [a.status_code for a in answers] == [400, 400, 400, 429]


def test_an_unreachable_cache_lets_orders_through_with_a_warning(settings, caplog, paystack):
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        }
    }
    client = Client(raise_request_exception=True)

    with caplog.at_level(logging.WARNING, logger="voting.limits"):
        answers = [order(client, REMOTE_ADDR=CLIENT_IP).status_code for _ in range(4)]

    assert answers == [400, 400, 400, 400]
    warning = next(r for r in caplog.records if r.name == "voting.limits")
    assert warning.getMessage() == "rate limit unavailable; request let through"
    assert warning.group == "api-payments"
