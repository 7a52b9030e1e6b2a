import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast
from unittest.mock import patch

import pytest
import redis
import requests
import responses
from django.test import Client

from paystack.client import gateway
from tests.helpers import CHECKOUT_URL, INITIALIZE_URL, WEBHOOK_URL, paystack_signature

if TYPE_CHECKING:
    # What the test client returns: a response with .json() and the request it answered.
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse


@pytest.fixture(autouse=True)
def fresh_gateway_client():
    """The client is cached per process; tests that change settings need a new one."""
    gateway.cache_clear()
    yield
    gateway.cache_clear()


@pytest.fixture(autouse=True)
def retries_due_at_once(monkeypatch, settings):
    """Tasks applied eagerly retry at once, whatever countdown they ask for: a retry's message
    must then be due at once too (not_before), or its claim is refused. And a payment may be
    verified again at once. Tests of backoff and cooldown set their own."""
    monkeypatch.setattr("tasks.retry.backoff_seconds", lambda retries, retry_after: 0.0)
    settings.VERIFY_COOLDOWN_SECONDS = 0


@pytest.fixture(autouse=True)
def shared_cache_emptied() -> Iterator[None]:
    """Rate-limit counts and cached gauges start from nothing in every test.

    Only tally's keys ("tally:…"): the cache shares its Redis database with the broker, and
    cache.clear() would flush the broker's queues too.
    """
    from django.conf import settings

    client = redis.Redis.from_url(str(settings.CACHES["default"]["LOCATION"]))
    try:
        for key in client.scan_iter(match="tally:*", count=1000):
            client.delete(key)
        yield
    finally:
        client.close()


@pytest.fixture
def broker():
    """The real Redis broker (database 15 in tests), emptied before and after the test."""
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


SignedPost = Callable[..., "TestResponse"]


@pytest.fixture
def signed_post(client: Client, settings) -> SignedPost:
    """POST raw bytes to the webhook, signed as Paystack would (with `key` if given).

    `via` sends through another Client (one per thread); other keywords go to the request
    as WSGI environ entries, e.g. REMOTE_ADDR or HTTP_X_FORWARDED_FOR.
    """

    def post(
        body: bytes, key: str | None = None, *, via: Client | None = None, **extra: Any
    ) -> "TestResponse":
        signature = paystack_signature(body, settings.PAYSTACK_SECRET_KEY if key is None else key)
        return (via or client).generic(
            "POST",
            WEBHOOK_URL,
            body,
            content_type="application/json",
            HTTP_X_PAYSTACK_SIGNATURE=signature,
            **extra,
        )

    return post


@pytest.fixture
def enqueued() -> Iterator[list[int]]:
    """Record the delivery ids enqueued instead of publishing them (thread-safe)."""
    sent: list[int] = []
    lock = threading.Lock()

    def record(delivery_id: int, generation: int | None = None) -> None:
        with lock:
            sent.append(delivery_id)

    with patch("tasks.deliveries.process_deliveries.delay", side_effect=record):
        yield sent


@pytest.fixture
def tasks_run_eagerly() -> Iterator[None]:
    """Enqueued deliveries run at once in the test's thread, each as a batch of one, as a
    worker would run them."""
    from tasks.deliveries import process_deliveries

    def run(delivery_id: int, generation: int | None = None) -> None:
        process_deliveries.apply(args=(delivery_id, generation))

    with patch("tasks.deliveries.process_deliveries.delay", side_effect=run):
        yield


@pytest.fixture
def paystack() -> Iterator[responses.RequestsMock]:
    """The gateway at PAYSTACK_BASE_URL, stubbed at the HTTP boundary; no call goes out."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def initialize_ok(paystack: responses.RequestsMock) -> responses.RequestsMock:
    """Paystack opens a checkout and echoes our reference, as the real API does."""

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        sent = json.loads(cast(bytes, request.body))
        data = {
            "authorization_url": CHECKOUT_URL,
            "access_code": "ac_test_1",
            "reference": sent["reference"],
        }
        body = {"status": True, "message": "Authorization URL created", "data": data}
        return 200, {}, json.dumps(body)

    paystack.add_callback(
        responses.POST, INITIALIZE_URL, callback=answer, content_type="application/json"
    )
    return paystack
