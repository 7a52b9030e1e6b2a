"""POST /api/payments/ takes application/json only: a cross-site <form enctype=text/plain>
could otherwise open pending payments (and Paystack calls) from other people's browsers."""

import json

import pytest
from django.test import Client

from ledger.models import Payment
from tests.factories import ContestantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def body() -> str:
    contestant = ContestantFactory()
    return json.dumps({"contestant": contestant.pk, "votes": 2, "email": "fan@example.com"})


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # what <form enctype="text/plain"> sends
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "",
    ],
)
def test_any_other_content_type_gets_415_and_writes_nothing(initialize_ok, body, content_type):
    response = Client().generic("POST", "/api/payments/", body, content_type=content_type)

    assert response.status_code == 415
    assert response.json() == {"error": "Content-Type must be application/json"}
    assert not Payment.objects.exists()
    assert len(initialize_ok.calls) == 0


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8"])
def test_json_with_or_without_a_charset_is_taken(initialize_ok, body, content_type):
    response = Client().generic("POST", "/api/payments/", body, content_type=content_type)

    assert response.status_code == 201
    assert Payment.objects.count() == 1
