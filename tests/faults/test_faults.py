"""Faults around the front door, on a real gunicorn: the database dropping its connections, and
a storm of bad requests among good ones. Each ends with what was stored, exactly."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from tests.helpers import charge_success, event_bytes, paystack_signature
from webhooks.models import Delivery

pytestmark = pytest.mark.e2e


def signed(body: bytes, key: str) -> dict[str, str]:
    return {
        "x-paystack-signature": paystack_signature(body, key),
        "content-type": "application/json",
    }


def post_signed(session: requests.Session, url: str, body: bytes, key: str) -> int:
    return session.post(url, data=body, headers=signed(body, key), timeout=10).status_code


def test_database_connections_killed_under_web_lose_nothing_and_store_nothing_twice(stack, web):
    key = stack.env["PAYSTACK_SECRET_KEY"]
    url = f"{web}/webhooks/paystack/"
    bodies = {
        f"tly-fault{i:05d}": event_bytes(charge_success(f"tly-fault{i:05d}", gateway_id=7_000 + i))
        for i in range(300)
    }
    answers: dict[str, int] = {}
    halfway = threading.Event()

    def send_all(references: list[str]) -> None:
        with requests.Session() as session:
            for count, reference in enumerate(references):
                answers[reference] = post_signed(session, url, bodies[reference], key)
                if count == len(references) // 2:
                    halfway.set()

    references = list(bodies)
    senders = [threading.Thread(target=send_all, args=(references[i::4],)) for i in range(4)]
    for sender in senders:
        sender.start()
    halfway.wait(timeout=30)
    with connection.cursor() as cursor:  # every connection web holds to the test database
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    for sender in senders:
        sender.join()

    assert set(answers.values()) <= {200, 503}
    stored = set(Delivery.objects.values_list("reference", flat=True))
    assert {r for r, status in answers.items() if status == 200} <= stored
    # Paystack retries whatever did not get a 200; afterwards every event is stored once.
    with requests.Session() as session:
        for reference, status in answers.items():
            if status != 200:
                assert post_signed(session, url, bodies[reference], key) == 200
    assert Delivery.objects.count() == len(bodies)
    assert set(Delivery.objects.values_list("reference", flat=True)) == set(bodies)


def test_forged_malformed_and_oversized_requests_among_valid_ones_store_only_the_valid(stack, web):
    key = stack.env["PAYSTACK_SECRET_KEY"]
    url = f"{web}/webhooks/paystack/"
    requests_to_send: list[tuple[str, bytes, dict[str, str], int]] = []
    for i in range(40):
        valid = event_bytes(charge_success(f"tly-valid{i:04d}", gateway_id=9_000 + i))
        forged = event_bytes(charge_success(f"tly-forged{i:04d}", gateway_id=8_000 + i))
        truncated = valid[: len(valid) // 2]
        requests_to_send += [
            ("valid", valid, signed(valid, key), 200),
            ("forged", forged, signed(forged, "sk_test_someone_else"), 401),
            ("unsigned", forged, {"content-type": "application/json"}, 401),
            ("malformed", truncated, signed(truncated, key), 400),
            ("not json", b"not json", signed(b"not json", key), 400),
            ("array", b"[1, 2]", signed(b"[1, 2]", key), 400),
            ("oversized", b"x" * 300_000, signed(b"x" * 300_000, key), 413),
        ]
    random.shuffle(requests_to_send)

    def send(item: tuple[str, bytes, dict[str, str], int]) -> tuple[str, int, int]:
        kind, body, headers, expected = item
        answer = requests.post(url, data=body, headers=headers, timeout=10)
        return kind, expected, answer.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, requests_to_send))

    wrong = [(kind, expected, got) for kind, expected, got in results if expected != got]
    assert not wrong
    stored = set(Delivery.objects.values_list("reference", flat=True))
    assert stored == {f"tly-valid{i:04d}" for i in range(40)}
