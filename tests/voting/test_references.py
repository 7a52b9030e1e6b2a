"""A reference outside Paystack's alphabet is refused before any query: 404, never a 500."""

from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tasks.verification import verify_payment
from tests.factories import PaymentFactory

pytestmark = pytest.mark.django_db

MALFORMED = [
    pytest.param("%00", id="NUL"),
    pytest.param("tly-%00abc", id="NUL inside"),
    pytest.param("tly%20x", id="space"),
    pytest.param("%E2%82%A6", id="non-ASCII"),
    pytest.param("x" * 101, id="too long"),
]


@pytest.fixture
def client() -> Client:
    # raise_request_exception: a 500 would surface here as the exception behind it.
    return Client(raise_request_exception=True)


@pytest.mark.parametrize("reference", MALFORMED)
def test_the_api_answers_404_without_a_query(client, reference):
    PaymentFactory()

    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/api/payments/{reference}/")

    assert response.status_code == 404
    assert response.json() == {"error": "unknown reference"}
    assert len(queries) == 0


@pytest.mark.parametrize("reference", MALFORMED)
def test_the_status_page_answers_404_without_a_query(client, reference):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/payments/{reference}/")

    assert response.status_code == 404
    assert b"Back to the contest" in response.content
    assert b"\x00" not in response.content
    assert len(queries) == 0


@pytest.mark.parametrize("reference", MALFORMED)
@pytest.mark.parametrize("parameter", ["reference", "trxref"])
def test_the_callback_answers_404_without_a_query_or_a_verify(client, reference, parameter):
    with (
        mock.patch.object(verify_payment, "delay") as delay,
        CaptureQueriesContext(connection) as queries,
    ):
        response = client.get(f"/payments/callback/?{parameter}={reference}")

    assert response.status_code == 404
    assert len(queries) == 0
    delay.assert_not_called()


def test_a_well_formed_reference_with_dots_and_equals_is_still_looked_up(client):
    payment = PaymentFactory(reference="ps.ref=1-A")

    assert client.get(f"/api/payments/{payment.reference}/").status_code == 200
    assert client.get(f"/payments/{payment.reference}/").status_code == 200
