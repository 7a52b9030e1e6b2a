"""The JSON API and the payer's return from Paystack (docs/contract.md, HTTP)."""

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, cast
from unittest import mock

import pytest
import requests
import responses
from django.db import connection
from django.test import Client
from django.utils import timezone
from kombu.exceptions import OperationalError

from ledger.models import Contestant, Payment
from tasks.verification import verify_payment
from tests.factories import ContestantFactory, ContestFactory, PaymentFactory
from tests.helpers import CHECKOUT_URL, INITIALIZE_URL

pytestmark = pytest.mark.django_db


@pytest.fixture
def paystack() -> Iterator[responses.RequestsMock]:
    """The gateway at the HTTP boundary. A URL not registered here fails the call, so a view
    that should never reach the gateway shows up as calls in `paystack.calls`."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def contestant() -> Contestant:
    return ContestantFactory(contest__price_per_vote=5000, contest__currency="NGN")


@pytest.fixture
def enqueued() -> Iterator[mock.MagicMock]:
    """verify_payment's publish, recorded instead of sent to the broker."""
    with mock.patch.object(verify_payment, "delay") as delay:
        yield delay


def order(client: Client, body: Any) -> Any:
    """POST an order to the API as the page's script does."""
    payload = body if isinstance(body, bytes) else json.dumps(body)
    return client.post("/api/payments/", data=payload, content_type="application/json")


# --- GET /api/contestants/ ----------------------------------------------------------------


def test_contestants_lists_the_open_contest_by_id_with_totals():
    contest = ContestFactory()
    first = ContestantFactory(contest=contest, name="Ada", slug="ada", votes=7)
    second = ContestantFactory(contest=contest, name="Bola", slug="bola", votes=0)
    ContestantFactory(contest__closes_at=timezone.now() - timedelta(hours=1))  # closed contest

    response = Client().get("/api/contestants/")

    assert response.status_code == 200
    assert response.json() == {
        "contestants": [
            {"id": first.id, "name": "Ada", "slug": "ada", "votes": 7, "votes_under_dispute": 0},
            {"id": second.id, "name": "Bola", "slug": "bola", "votes": 0, "votes_under_dispute": 0},
        ]
    }
    assert "no-cache" in response["Cache-Control"]  # polled every 2 s: never a stale total


def test_contestants_is_an_empty_list_when_no_contest_is_open():
    ContestantFactory(contest__opens_at=timezone.now() + timedelta(days=1))

    response = Client().get("/api/contestants/")

    assert response.status_code == 200
    assert response.json() == {"contestants": []}


# --- POST /api/payments/: bad input ---------------------------------------------------------

BodyFor = Callable[[int], Any]

BAD_ORDERS: list[tuple[str, BodyFor, str]] = [
    ("not-json", lambda c: b"votes=3", "JSON object"),
    ("not-utf8", lambda c: b"\xff\xfe{", "JSON object"),
    ("a-list", lambda c: [c, 3, "fan@example.com"], "JSON object"),
    ("a-string", lambda c: "hello", "JSON object"),
    ("deeply-nested", lambda c: b"[" * 100_000, "JSON object"),
    ("contestant-missing", lambda c: {"votes": 3, "email": "fan@example.com"}, "contestant"),
    (
        "contestant-null",
        lambda c: {"contestant": None, "votes": 3, "email": "a@b.co"},
        "contestant",
    ),
    (
        "contestant-string",
        lambda c: {"contestant": str(c), "votes": 3, "email": "a@b.co"},
        "contestant",
    ),
    (
        "contestant-bool",
        lambda c: {"contestant": True, "votes": 3, "email": "a@b.co"},
        "contestant",
    ),
    (
        "contestant-float",
        lambda c: {"contestant": float(c), "votes": 3, "email": "a@b.co"},
        "contestant",
    ),
    (
        "contestant-unknown",
        lambda c: {"contestant": c + 1000, "votes": 3, "email": "a@b.co"},
        "contestant",
    ),
    ("contestant-zero", lambda c: {"contestant": 0, "votes": 3, "email": "a@b.co"}, "contestant"),
    (
        "contestant-past-bigint",
        lambda c: {"contestant": 2**70, "votes": 3, "email": "a@b.co"},
        "contestant",
    ),
    ("votes-missing", lambda c: {"contestant": c, "email": "fan@example.com"}, "votes"),
    ("votes-string", lambda c: {"contestant": c, "votes": "3", "email": "a@b.co"}, "votes"),
    ("votes-bool", lambda c: {"contestant": c, "votes": True, "email": "a@b.co"}, "votes"),
    ("votes-float", lambda c: {"contestant": c, "votes": 2.5, "email": "a@b.co"}, "votes"),
    ("votes-whole-float", lambda c: {"contestant": c, "votes": 2.0, "email": "a@b.co"}, "votes"),
    ("votes-zero", lambda c: {"contestant": c, "votes": 0, "email": "a@b.co"}, "votes"),
    ("votes-negative", lambda c: {"contestant": c, "votes": -5, "email": "a@b.co"}, "votes"),
    ("votes-too-many", lambda c: {"contestant": c, "votes": 1001, "email": "a@b.co"}, "votes"),
    ("email-missing", lambda c: {"contestant": c, "votes": 3}, "email"),
    ("email-empty", lambda c: {"contestant": c, "votes": 3, "email": ""}, "email"),
    ("email-not-a-string", lambda c: {"contestant": c, "votes": 3, "email": 42}, "email"),
    ("email-invalid", lambda c: {"contestant": c, "votes": 3, "email": "fan@"}, "email"),
    ("email-no-at", lambda c: {"contestant": c, "votes": 3, "email": "fan.example.com"}, "email"),
    (
        "email-too-long",
        lambda c: {"contestant": c, "votes": 3, "email": "a" * 64 + "@" + "b" * 190 + ".com"},
        "email",
    ),
]


@pytest.mark.parametrize(
    ("body_for", "field"),
    [pytest.param(body_for, field, id=name) for name, body_for, field in BAD_ORDERS],
)
def test_bad_order_gets_400_naming_the_field_and_writes_nothing(
    paystack, contestant, body_for, field
):
    response = order(Client(), body_for(contestant.id))

    assert response.status_code == 400
    assert field in response.json()["error"]
    assert not Payment.objects.exists()
    assert len(paystack.calls) == 0


def test_votes_at_the_limits_are_accepted(initialize_ok, contestant):
    client = Client()

    low = order(client, {"contestant": contestant.id, "votes": 1, "email": "a@example.com"})
    high = order(client, {"contestant": contestant.id, "votes": 1000, "email": "b@example.com"})

    assert (low.status_code, high.status_code) == (201, 201)
    assert sorted(Payment.objects.values_list("votes", flat=True)) == [1, 1000]


def test_closed_contest_gets_400_and_writes_nothing(paystack):
    closed = ContestantFactory(contest__closes_at=timezone.now() - timedelta(minutes=1))

    response = order(Client(), {"contestant": closed.id, "votes": 2, "email": "fan@example.com"})

    assert response.status_code == 400
    assert "closed" in response.json()["error"]
    assert not Payment.objects.exists()
    assert len(paystack.calls) == 0


def test_other_methods_get_405():
    assert Client().get("/api/payments/").status_code == 405
    assert Client().post("/api/contestants/").status_code == 405


# --- POST /api/payments/: the gateway --------------------------------------------------------


def test_order_opens_a_checkout_and_leaves_one_pending_payment(initialize_ok, contestant):
    response = order(
        Client(), {"contestant": contestant.id, "votes": 3, "email": " fan@example.com "}
    )

    assert response.status_code == 201
    payment = Payment.objects.get()
    assert response.json() == {
        "reference": payment.reference,
        "amount": 15000,
        "currency": "NGN",
        "votes": 3,
        "contestant": contestant.id,
        "status": "pending",
        "authorization_url": CHECKOUT_URL,
    }
    assert payment.status == Payment.Status.PENDING
    assert payment.amount == 3 * contestant.contest.price_per_vote
    assert payment.email == "fan@example.com"
    (call,) = initialize_ok.calls
    assert call.request.headers["Authorization"] == "Bearer sk_test_tally_suite"
    assert json.loads(call.request.body) == {
        "email": "fan@example.com",
        "amount": 15000,
        "currency": "NGN",
        "reference": payment.reference,
        "callback_url": "http://testserver/payments/callback/",
        "metadata": {"payment": payment.id, "contestant": contestant.id, "votes": 3},
    }


def test_callback_url_follows_the_host_the_payer_used(initialize_ok, contestant):
    client = Client(HTTP_HOST="vote.example.com")

    response = order(client, {"contestant": contestant.id, "votes": 1, "email": "a@example.com"})

    assert response.status_code == 201
    sent = json.loads(initialize_ok.calls[0].request.body)
    assert sent["callback_url"] == "http://vote.example.com/payments/callback/"


@pytest.mark.django_db(transaction=True)
def test_payment_is_committed_before_the_gateway_hears_of_it_and_no_transaction_is_open(
    paystack, contestant
):
    """A webhook for the reference may arrive the moment Paystack knows it: the row must
    already be visible to other connections, and no transaction may be held over the call."""
    seen: dict[str, Any] = {}

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        reference = json.loads(cast(bytes, request.body))["reference"]
        seen["in_atomic_block"] = connection.in_atomic_block

        def look_from_another_connection() -> None:
            try:
                seen["visible"] = Payment.objects.filter(reference=reference).exists()
            finally:
                connection.close()

        other = threading.Thread(target=look_from_another_connection)
        other.start()
        other.join()
        data = {"authorization_url": CHECKOUT_URL, "access_code": "ac", "reference": reference}
        return 200, {}, json.dumps({"status": True, "message": "ok", "data": data})

    paystack.add_callback(responses.POST, INITIALIZE_URL, callback=answer)

    response = order(Client(), {"contestant": contestant.id, "votes": 2, "email": "a@b.co"})

    assert response.status_code == 201
    assert seen == {"in_atomic_block": False, "visible": True}


@pytest.mark.parametrize(
    ("gateway_answer", "reason"),
    [
        pytest.param(
            {"body": requests.ConnectionError("connection refused")}, "ConnectionError", id="down"
        ),
        pytest.param({"body": requests.Timeout("read timed out")}, "Timeout", id="timeout"),
        pytest.param(
            {"status": 500, "json": {"status": False, "message": "Server error"}}, "500", id="500"
        ),
        pytest.param(
            {"status": 401, "json": {"status": False, "message": "Invalid key"}},
            "Invalid key",
            id="401",
        ),
        pytest.param(
            {
                "status": 400,
                "json": {"status": False, "message": "Currency not supported by merchant"},
            },
            "Currency not supported",
            id="400-currency",
        ),
        pytest.param(
            {"status": 200, "json": {"status": True, "data": {}}}, "authorization_url", id="no-url"
        ),
    ],
)
def test_gateway_refusing_or_down_gets_502_and_the_payment_is_failed_not_pending(
    paystack, contestant, gateway_answer, reason
):
    paystack.add(responses.POST, INITIALIZE_URL, **gateway_answer)

    response = order(Client(), {"contestant": contestant.id, "votes": 2, "email": "a@b.co"})

    assert response.status_code == 502
    assert response.json()["error"]
    assert "Invalid key" not in response.json()["error"]  # our configuration stays private
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.FAILED
    assert reason in payment.reason
    assert list(payment.transitions.values_list("from_status", "to_status")) == [
        ("pending", "failed")
    ]
    assert len(paystack.calls) == 1  # one attempt; a retry would risk duplicate_reference


def test_gateway_answering_another_reference_gets_502_and_the_payment_is_failed(
    paystack, contestant
):
    data = {"authorization_url": CHECKOUT_URL, "access_code": "ac", "reference": "T0000000001"}
    paystack.add(
        responses.POST, INITIALIZE_URL, json={"status": True, "message": "ok", "data": data}
    )

    response = order(Client(), {"contestant": contestant.id, "votes": 2, "email": "a@b.co"})

    assert response.status_code == 502
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.FAILED
    assert "T0000000001" in payment.reason


# --- GET /api/payments/<reference>/ --------------------------------------------------------


def test_payment_shows_a_pending_payment():
    payment = PaymentFactory(votes=4, contestant__contest__price_per_vote=2500)

    response = Client().get(f"/api/payments/{payment.reference}/")

    assert response.status_code == 200
    assert response.json() == {
        "reference": payment.reference,
        "status": "pending",
        "votes": 4,
        "amount": 10000,
        "currency": "NGN",
        "contestant": payment.contestant_id,
        "credited_at": None,
        "dispute": None,
    }


def test_payment_shows_when_it_was_credited():
    credited_at = timezone.now()
    payment = PaymentFactory(status=Payment.Status.CREDITED, credited_at=credited_at)

    body = Client().get(f"/api/payments/{payment.reference}/").json()

    assert body["status"] == "credited"
    assert body["credited_at"] == credited_at.isoformat()


def test_unknown_payment_gets_404():
    response = Client().get("/api/payments/tly-nosuchthing/")

    assert response.status_code == 404
    assert response.json() == {"error": "unknown reference"}


# --- GET /payments/callback/ ----------------------------------------------------------------


def test_callback_for_a_pending_payment_enqueues_one_verification_and_redirects(paystack, enqueued):
    payment = PaymentFactory()
    ref = payment.reference

    response = Client().get(f"/payments/callback/?trxref={ref}&reference={ref}")

    assert response.status_code == 302
    assert response["Location"] == f"/payments/{ref}/"
    enqueued.assert_called_once_with(ref)
    assert len(paystack.calls) == 0
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING  # nothing is credited in the request


def test_callback_reads_trxref_when_reference_is_missing(paystack, enqueued):
    payment = PaymentFactory()

    response = Client().get(f"/payments/callback/?trxref={payment.reference}")

    assert response.status_code == 302
    enqueued.assert_called_once_with(payment.reference)


@pytest.mark.parametrize("status", ["credited", "flagged", "reversed"])
def test_callback_for_a_settled_payment_enqueues_nothing(paystack, enqueued, status):
    payment = PaymentFactory(status=status, credited_at=timezone.now())

    response = Client().get(f"/payments/callback/?reference={payment.reference}")

    assert response.status_code == 302
    assert response["Location"] == f"/payments/{payment.reference}/"
    enqueued.assert_not_called()
    assert len(paystack.calls) == 0


def test_callback_for_a_failed_payment_asks_for_a_verify_again(paystack, enqueued):
    """The payer may have completed a checkout we had closed as failed: look again."""
    payment = PaymentFactory(status=Payment.Status.FAILED)

    response = Client().get(f"/payments/callback/?reference={payment.reference}")

    assert response.status_code == 302
    enqueued.assert_called_once_with(payment.reference)
    assert len(paystack.calls) == 0


@pytest.mark.parametrize(
    "query", ["?reference=tly-nosuchthing&trxref=tly-nosuchthing", "", "?reference="]
)
def test_callback_for_an_unknown_or_missing_reference_gets_404(paystack, enqueued, query):
    PaymentFactory()

    response = Client().get(f"/payments/callback/{query}")

    assert response.status_code == 404
    assert b"Back to the contest" in response.content
    enqueued.assert_not_called()
    assert len(paystack.calls) == 0


def test_callback_still_shows_the_status_page_when_the_broker_is_down(paystack):
    payment = PaymentFactory()

    with mock.patch.object(
        verify_payment, "delay", side_effect=OperationalError("connection refused")
    ) as delay:
        response = Client().get(f"/payments/callback/?reference={payment.reference}")

    assert response.status_code == 302
    assert delay.call_count == 1
    assert len(paystack.calls) == 0
