"""A cap on pending payments per email: a script cannot pile up unpaid checkouts (each a
Paystack call, each waiting for reconciliation) in one person's name."""

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ledger.models import Payment
from tests.factories import ContestantFactory, PaymentFactory
from voting.checkout import MAX_OPEN_PAYMENTS_PER_EMAIL, open_payments_of

pytestmark = pytest.mark.django_db


def order(contestant, email: str):
    body = json.dumps({"contestant": contestant.pk, "votes": 1, "email": email})
    return Client().post("/api/payments/", body, content_type="application/json")


def test_past_the_cap_an_email_gets_429_and_nothing_is_written(initialize_ok):
    contestant = ContestantFactory()
    for _ in range(MAX_OPEN_PAYMENTS_PER_EMAIL):
        PaymentFactory(contestant=contestant, email="fan@example.com")

    refused = order(contestant, "FAN@example.com")  # the same address in other letters

    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    assert "too many unpaid checkouts" in refused.json()["error"]
    assert Payment.objects.count() == MAX_OPEN_PAYMENTS_PER_EMAIL
    assert len(initialize_ok.calls) == 0
    assert order(contestant, "someone.else@example.com").status_code == 201


def test_settled_payments_do_not_count_towards_the_cap(initialize_ok):
    contestant = ContestantFactory()
    for status in ("credited", "failed", "reversed"):
        for _ in range(MAX_OPEN_PAYMENTS_PER_EMAIL):
            PaymentFactory(
                contestant=contestant,
                email="fan@example.com",
                status=status,
                credited_at=timezone.now() if status == "credited" else None,
            )
    for _ in range(MAX_OPEN_PAYMENTS_PER_EMAIL - 1):
        PaymentFactory(contestant=contestant, email="fan@example.com")

    assert order(contestant, "fan@example.com").status_code == 201
    assert order(contestant, "fan@example.com").status_code == 429


def test_the_count_can_use_the_partial_index():
    with CaptureQueriesContext(connection) as queries:
        assert open_payments_of("Nobody@example.com") == 0
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny table: make the planner show it
        try:
            cursor.execute(f"EXPLAIN {queries[0]['sql']}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("SET enable_seqscan = on")

    assert "payment_pending_email" in plan
