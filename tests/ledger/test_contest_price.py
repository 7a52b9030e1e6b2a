"""price_per_vote times the largest order must fit Payment.amount (a BIGINT): refused when the
contest is set up, so buying votes can never overflow into a 500."""

import json

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse

from ledger.models import MAX_PRICE_PER_VOTE, MAX_VOTES_PER_PAYMENT, Contest, Payment
from tests.factories import ContestantFactory, ContestFactory

pytestmark = pytest.mark.django_db

BIGINT_MAX = 2**63 - 1


def test_the_largest_allowed_price_times_the_largest_order_fits_a_bigint():
    assert MAX_PRICE_PER_VOTE * MAX_VOTES_PER_PAYMENT <= BIGINT_MAX
    assert (MAX_PRICE_PER_VOTE + 1) * MAX_VOTES_PER_PAYMENT > BIGINT_MAX


def test_the_database_refuses_a_price_whose_largest_order_would_overflow():
    with pytest.raises(IntegrityError, match="contest_price_fits_largest_order"):  # noqa: SIM117
        with transaction.atomic():
            ContestFactory(price_per_vote=MAX_PRICE_PER_VOTE + 1)

    assert ContestFactory(price_per_vote=MAX_PRICE_PER_VOTE).pk


def _add_contest(admin_client: Client, price: int):
    form = {
        "name": "Finale",
        "slug": "finale",
        "price_per_vote": str(price),
        "currency": "NGN",
        "opens_at_0": "2026-01-01",
        "opens_at_1": "00:00:00",
        "closes_at_0": "2099-01-01",
        "closes_at_1": "00:00:00",
        "contestants-TOTAL_FORMS": "0",
        "contestants-INITIAL_FORMS": "0",
        "contestants-MIN_NUM_FORMS": "0",
        "contestants-MAX_NUM_FORMS": "1000",
    }
    return admin_client.post(reverse("admin:ledger_contest_add"), form)


def test_the_admin_refuses_such_a_price_with_a_message_and_writes_nothing(admin_client):
    refused = _add_contest(admin_client, 10**17)

    assert refused.status_code == 200  # the form again, with the error
    errors = refused.context["adminform"].form.errors
    assert "price_per_vote" in errors
    assert str(MAX_PRICE_PER_VOTE) in errors["price_per_vote"][0]
    assert not Contest.objects.exists()

    accepted = _add_contest(admin_client, 5000)
    assert accepted.status_code == 302
    assert Contest.objects.get().price_per_vote == 5000


def test_the_largest_order_at_the_highest_price_is_created_not_a_500(initialize_ok):
    contestant = ContestantFactory(contest__price_per_vote=MAX_PRICE_PER_VOTE)
    body = {"contestant": contestant.pk, "votes": MAX_VOTES_PER_PAYMENT, "email": "f@example.com"}

    response = Client(raise_request_exception=True).post(
        "/api/payments/", json.dumps(body), content_type="application/json"
    )

    assert response.status_code == 201
    assert Payment.objects.get().amount == MAX_PRICE_PER_VOTE * MAX_VOTES_PER_PAYMENT
