"""POST /webhooks/paystack/: the checks in the contract's order, storage, dedup, failures."""

import io
import json
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from unittest.mock import patch

import pytest
from django.db import OperationalError
from django.test import Client
from kombu.exceptions import OperationalError as BrokerOperationalError

from config import celery_app
from tasks.deliveries import process_deliveries
from tasks.sweeps import sweep_stuck_deliveries
from tests.helpers import (
    WEBHOOK_URL,
    charge_success,
    event_bytes,
    paystack_signature,
    run_concurrently,
)
from webhooks.models import Delivery

if TYPE_CHECKING:
    from typing_extensions import Buffer

pytestmark = pytest.mark.django_db

PAYSTACK_IP = "52.31.139.75"
ELSEWHERE_IP = "203.0.113.9"  # TEST-NET-3: never a Paystack address
PROXY_IP = "10.0.0.2"


def a_charge(reference: str = "tly-endpoint0001", **data: Any) -> bytes:
    return event_bytes(charge_success(reference, **data))


def assert_nothing_stored() -> None:
    assert not Delivery.objects.exists()


def error_of(response) -> str:
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


# --- signature ---------------------------------------------------------------------------


def test_valid_signature_gets_200_stores_one_delivery_and_enqueues_it(
    signed_post, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_post(a_charge())

    assert response.status_code == 200
    assert response.json() == {"stored": True, "repeat": False}
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.QUEUED
    assert delivery.delivery_count == 1
    assert enqueued == [delivery.pk]


def test_one_changed_byte_gets_401_and_stores_nothing(client, settings):
    body = a_charge(amount=50000)
    signature = paystack_signature(body, settings.PAYSTACK_SECRET_KEY)
    tampered = body.replace(b"50000", b"90000")
    assert len(tampered) == len(body) and tampered != body

    response = client.post(
        WEBHOOK_URL, tampered, content_type="application/json", HTTP_X_PAYSTACK_SIGNATURE=signature
    )

    assert response.status_code == 401
    assert "signature" in error_of(response)
    assert_nothing_stored()


def test_missing_signature_gets_401_and_stores_nothing(client):
    response = client.post(WEBHOOK_URL, a_charge(), content_type="application/json")

    assert response.status_code == 401
    assert_nothing_stored()


def test_previous_key_is_accepted_only_while_a_rotation_names_it(signed_post, settings):
    settings.PAYSTACK_SECRET_KEY_PREVIOUS = "sk_test_the_old_key"

    during = signed_post(a_charge("tly-rotation0001"), key="sk_test_the_old_key")
    unknown = signed_post(a_charge("tly-rotation0002"), key="sk_test_never_ours")
    settings.PAYSTACK_SECRET_KEY_PREVIOUS = ""
    after = signed_post(a_charge("tly-rotation0003"), key="sk_test_the_old_key")

    assert (during.status_code, unknown.status_code, after.status_code) == (200, 401, 401)
    assert list(Delivery.objects.values_list("reference", flat=True)) == ["tly-rotation0001"]


def test_an_empty_secret_key_verifies_nothing(signed_post, settings):
    """Fail closed: a missing key must not make an HMAC under the empty key valid."""
    settings.PAYSTACK_SECRET_KEY = ""

    response = signed_post(a_charge(), key="")

    assert response.status_code == 401
    assert_nothing_stored()


def test_the_same_json_reserialised_fails_the_original_signature(client, settings):
    """The raw bytes are signed, not the JSON they mean."""
    original = a_charge()
    signature = paystack_signature(original, settings.PAYSTACK_SECRET_KEY)
    reserialised = json.dumps(json.loads(original), indent=2).encode()
    assert json.loads(reserialised) == json.loads(original)

    response = client.post(
        WEBHOOK_URL,
        reserialised,
        content_type="application/json",
        HTTP_X_PAYSTACK_SIGNATURE=signature,
    )

    assert response.status_code == 401
    assert_nothing_stored()


# --- method and size ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_get_405(client, method):
    response = client.generic(method, WEBHOOK_URL, a_charge())

    assert response.status_code == 405
    assert_nothing_stored()


class Unreadable(io.RawIOBase):
    """A request body that fails the test if anyone reads it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "Buffer") -> int:
        raise AssertionError("the body was read although Content-Length was over the limit")


def test_declared_length_over_the_limit_gets_413_without_reading_the_body(client, settings):
    settings.WEBHOOK_MAX_BYTES = 1000
    too_big = 1001

    response = client.generic(
        "POST",
        WEBHOOK_URL,
        b"",
        content_type="application/json",
        CONTENT_LENGTH=str(too_big),
        **{"wsgi.input": Unreadable()},
    )

    assert response.status_code == 413
    assert "too large" in error_of(response)
    assert_nothing_stored()


def test_a_body_of_exactly_the_limit_is_accepted(signed_post, settings):
    body = a_charge()
    settings.WEBHOOK_MAX_BYTES = len(body)

    assert signed_post(body).status_code == 200
    settings.WEBHOOK_MAX_BYTES = len(body) - 1
    assert signed_post(body).status_code == 413


def test_body_without_content_length_over_the_limit_gets_413_reading_at_most_limit_plus_one(
    signed_post, settings
):
    settings.WEBHOOK_MAX_BYTES = 1000
    stream = io.BytesIO(b" " * 5000)

    response = signed_post(b"", CONTENT_LENGTH="", **{"wsgi.input": stream})

    assert response.status_code == 413
    assert stream.tell() <= 1001
    assert_nothing_stored()


def test_body_without_content_length_within_the_limit_is_stored(signed_post):
    """A chunked request has no Content-Length: the endpoint reads the stream itself."""
    body = a_charge()

    response = signed_post(body, CONTENT_LENGTH="", **{"wsgi.input": io.BytesIO(body)})

    assert response.status_code == 200
    assert Delivery.objects.get().raw_body.encode() == body


def test_a_too_large_unsigned_body_gets_413_not_401(client, settings):
    settings.WEBHOOK_MAX_BYTES = 10

    response = client.post(WEBHOOK_URL, a_charge(), content_type="application/json")

    assert response.status_code == 413
    assert_nothing_stored()


# --- who is calling ----------------------------------------------------------------------


def test_an_address_outside_the_allowlist_gets_403(signed_post, settings):
    settings.PAYSTACK_WEBHOOK_IPS = [PAYSTACK_IP]

    refused = signed_post(a_charge(), REMOTE_ADDR=ELSEWHERE_IP)

    assert refused.status_code == 403
    assert "address" in error_of(refused)
    assert_nothing_stored()
    assert signed_post(a_charge(), REMOTE_ADDR=PAYSTACK_IP).status_code == 200


@pytest.mark.parametrize(
    ("address", "status"),
    [("52.31.139.75", 200), ("52.49.173.169", 200), ("52.214.14.220", 200), (ELSEWHERE_IP, 403)],
)
def test_the_paystack_keyword_allows_paystacks_published_addresses(
    signed_post, settings, address, status
):
    settings.PAYSTACK_WEBHOOK_IPS = ["paystack"]

    assert signed_post(a_charge(), REMOTE_ADDR=address).status_code == status
    assert Delivery.objects.count() == (1 if status == 200 else 0)


def test_behind_one_proxy_the_client_is_read_from_x_forwarded_for(signed_post, settings):
    settings.PAYSTACK_WEBHOOK_IPS = [PAYSTACK_IP]
    settings.PROXY_HOPS = 1

    response = signed_post(a_charge(), REMOTE_ADDR=PROXY_IP, HTTP_X_FORWARDED_FOR=PAYSTACK_IP)

    assert response.status_code == 200
    assert Delivery.objects.get().source_ip == PAYSTACK_IP


def test_a_spoofed_left_most_forwarded_entry_does_not_get_through(signed_post, settings):
    """The caller wrote the first entry; our proxy appended the address it really saw."""
    settings.PAYSTACK_WEBHOOK_IPS = [PAYSTACK_IP]
    settings.PROXY_HOPS = 1

    response = signed_post(
        a_charge(),
        REMOTE_ADDR=PROXY_IP,
        HTTP_X_FORWARDED_FOR=f"{PAYSTACK_IP}, {ELSEWHERE_IP}",
    )

    assert response.status_code == 403
    assert_nothing_stored()


@pytest.mark.parametrize("forwarded", [PAYSTACK_IP, "", f"{PAYSTACK_IP}, , "])
def test_a_forwarded_chain_shorter_than_the_proxy_hops_fails_closed(
    signed_post, settings, forwarded
):
    """Two trusted proxies but fewer than two entries: the request skipped one of them, and
    the only entry left was written by the client. It must not be taken as the address."""
    settings.PAYSTACK_WEBHOOK_IPS = [PAYSTACK_IP]
    settings.PROXY_HOPS = 2

    response = signed_post(a_charge(), REMOTE_ADDR=PROXY_IP, HTTP_X_FORWARDED_FOR=forwarded)

    assert response.status_code == 403
    assert_nothing_stored()


def test_behind_two_proxies_the_entry_the_outer_one_wrote_is_the_client(signed_post, settings):
    settings.PAYSTACK_WEBHOOK_IPS = [PAYSTACK_IP]
    settings.PROXY_HOPS = 2

    response = signed_post(
        a_charge(),
        REMOTE_ADDR=PROXY_IP,
        HTTP_X_FORWARDED_FOR=f"{ELSEWHERE_IP}, {PAYSTACK_IP}, 10.0.0.1",
    )

    assert response.status_code == 200
    assert Delivery.objects.get().source_ip == PAYSTACK_IP


def test_without_trusted_proxies_x_forwarded_for_is_ignored(signed_post, settings):
    settings.PAYSTACK_WEBHOOK_IPS = [PAYSTACK_IP]

    response = signed_post(a_charge(), REMOTE_ADDR=ELSEWHERE_IP, HTTP_X_FORWARDED_FOR=PAYSTACK_IP)

    assert response.status_code == 403
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("peer", "forwarded"),
    [
        (PROXY_IP, f"{PAYSTACK_IP}:54321"),  # proxies that append the client's port
        (f"::ffff:{PAYSTACK_IP}", None),  # a dual-stack socket's spelling of an IPv4 peer
    ],
)
def test_paystack_in_another_spelling_is_allowed_and_stored_plainly(
    signed_post, settings, peer, forwarded
):
    """Regression: these got 403, or a 503 from the inet column, for every genuine delivery."""
    settings.PAYSTACK_WEBHOOK_IPS = ["paystack"]
    settings.PROXY_HOPS = 1 if forwarded else 0
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}

    response = signed_post(a_charge(), REMOTE_ADDR=peer, **extra)

    assert response.status_code == 200
    assert Delivery.objects.get().source_ip == PAYSTACK_IP


def test_a_client_address_that_is_not_an_ip_is_stored_as_unknown(signed_post, settings):
    """With no allowlist the address is only recorded: it must never cost a 503."""
    settings.PROXY_HOPS = 1

    response = signed_post(a_charge(), REMOTE_ADDR=PROXY_IP, HTTP_X_FORWARDED_FOR="unknown")

    assert response.status_code == 200
    assert Delivery.objects.get().source_ip is None


def test_the_address_is_checked_before_the_signature(client, settings):
    settings.PAYSTACK_WEBHOOK_IPS = [PAYSTACK_IP]

    response = client.post(
        WEBHOOK_URL,
        a_charge(),
        content_type="application/json",
        HTTP_X_PAYSTACK_SIGNATURE="0" * 128,
        REMOTE_ADDR=ELSEWHERE_IP,
    )

    assert response.status_code == 403
    assert_nothing_stored()


# --- what the body must be ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"event": "charge.success", "data": {', id="invalid JSON"),
        pytest.param(b"\xff\xfe not utf-8", id="not UTF-8"),
        pytest.param(b'[{"event": "charge.success", "data": {}}]', id="JSON array"),
        pytest.param(b'{"data": {"reference": "tly-x"}}', id="missing event"),
        pytest.param(b'{"event": "", "data": {}}', id="empty event"),
        pytest.param(b'{"event": 7, "data": {}}', id="event not a string"),
        pytest.param(b'{"event": "charge.success", "data": "tly-x"}', id="data a string"),
        pytest.param(b'{"event": "charge.success", "data": [1]}', id="data a list"),
        pytest.param(b'{"event": "charge.success"}', id="missing data"),
        pytest.param(b'{"event": "charge.success", "data": {"a": NaN}}', id="NaN"),
        pytest.param(b'{"event": "charge.success", "data": {"a": Infinity}}', id="Infinity"),
        pytest.param(b'{"event": "charge.success", "data": {"a": -Infinity}}', id="-Infinity"),
        pytest.param(b'{"event": "charge.success", "data": {"amount": 1e999999}}', id="1e999999"),
        pytest.param(b'{"event": "charge.success", "data": {"a": [-1E+400]}}', id="-1E+400"),
        pytest.param(
            b'{"event": "charge.success", "data": {"a": 1' + b"0" * 5000 + b"}}", id="5000 digits"
        ),
        pytest.param(b'{"event": "charge.success", "data": {"a": "\\u0000"}}', id="NUL"),
        pytest.param(b'{"event": "charge.success", "data": {"a": "\\ud800"}}', id="lone surrogate"),
    ],
)
def test_a_signed_body_that_is_not_a_paystack_event_gets_400(signed_post, body):
    response = signed_post(body)

    assert response.status_code == 400
    assert error_of(response)
    assert_nothing_stored()


def test_an_escaped_backslash_before_u0000_is_text_and_is_stored(signed_post):
    r"""`\\u0000` in JSON is a backslash and "u0000", not a NUL: PostgreSQL stores it."""
    body = a_charge(note="C:\\u0000")
    assert b"\\\\u0000" in body

    response = signed_post(body)

    assert response.status_code == 200
    assert Delivery.objects.get().payload["data"]["note"] == "C:\\u0000"


def test_a_bad_signature_on_invalid_json_gets_401_not_400(client):
    response = client.post(
        WEBHOOK_URL, b"{not json", content_type="application/json", HTTP_X_PAYSTACK_SIGNATURE="ab"
    )

    assert response.status_code == 401
    assert_nothing_stored()


# --- repeats -----------------------------------------------------------------------------


def test_a_repeat_gets_200_and_is_counted_on_the_first_row(
    signed_post, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = signed_post(a_charge())
        second = signed_post(a_charge())

    assert (first.json()["repeat"], second.json()["repeat"]) == (False, True)
    delivery = Delivery.objects.get()
    assert delivery.delivery_count == 2
    assert delivery.last_delivered_at >= delivery.received_at
    assert enqueued == [delivery.pk]


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_repeats_store_one_row_and_enqueue_once(signed_post, enqueued):
    body = a_charge()

    responses = run_concurrently(lambda: signed_post(body, via=Client()), times=20)

    assert [r.status_code for r in responses] == [200] * 20
    assert sorted(r.json()["repeat"] for r in responses) == [False] + [True] * 19
    delivery = Delivery.objects.get()
    assert delivery.delivery_count == 20
    assert enqueued == [delivery.pk]


# --- the broker is down: answer 200, keep the delivery for the sweeper -------------------


def test_broker_refusing_the_task_still_answers_200_and_leaves_the_delivery_received(
    signed_post, django_capture_on_commit_callbacks
):
    refuse = BrokerOperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    with (
        patch("tasks.deliveries.process_deliveries.delay", side_effect=refuse) as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = signed_post(a_charge())

    assert response.status_code == 200
    delivery = Delivery.objects.get()
    delay.assert_called_once_with(delivery.pk, 1)
    assert delivery.status == Delivery.Status.RECEIVED


@pytest.fixture
def unreachable_broker() -> Iterator[None]:
    """process_delivery published through Celery's real producer to a port nobody listens on.

    Only the broker URL differs from production: the message is built, the publish retry
    policy runs and the TCP connect is really refused. The app's own broker and its pooled
    connections stay untouched, so no other test can inherit a broken connection.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    connection = celery_app.connection_for_write(f"redis://127.0.0.1:{closed_port}/15")

    def publish(delivery_id: int, generation: int) -> object:
        # Celery hands `connection` on to send_task.
        return process_deliveries.apply_async((delivery_id, generation), connection=connection)

    try:
        with patch("tasks.deliveries.process_deliveries.delay", side_effect=publish):
            yield
    finally:
        connection.release()


def test_a_really_unreachable_broker_answers_200_and_the_sweeper_enqueues_later(
    signed_post, unreachable_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_post(a_charge())

    assert response.status_code == 200
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.RECEIVED

    # The broker is back: the next sweep hands the stored delivery over.
    sent: list[tuple[int, int]] = []
    with (
        patch(
            "tasks.deliveries.process_deliveries.delay",
            side_effect=lambda *message: sent.append(message),
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        sweep_stuck_deliveries()
    assert sent == [(delivery.pk, 2)]  # a new generation: any older message is void
    assert Delivery.objects.get().status == Delivery.Status.QUEUED


# --- what is stored ----------------------------------------------------------------------


def test_an_event_we_do_not_act_on_is_stored_queued_and_answered_200(signed_post):
    transfer = {"event": "transfer.success", "data": {"id": 5, "reference": "trf_1"}}

    response = signed_post(event_bytes(transfer))

    assert response.status_code == 200
    delivery = Delivery.objects.get()
    assert (delivery.event, delivery.status) == ("transfer.success", Delivery.Status.QUEUED)


def test_the_raw_body_is_stored_byte_for_byte(signed_post):
    body = (
        '{ "event":"charge.success",\n\t"data" : {"id":4099260516 ,  "reference":"tly-raw00001",'
        '"customer":{"first_name":"Adébáyọ̀","last_name":"Ọláolúwa 🎉"},\r\n'
        '"amount":  50000, "note":"tab\\there" } }  '
    ).encode()

    response = signed_post(body)

    assert response.status_code == 200
    delivery = Delivery.objects.get()
    assert delivery.raw_body.encode("utf-8") == body
    assert delivery.payload == json.loads(body)
    assert delivery.payload["data"]["customer"]["first_name"] == "Adébáyọ̀"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            charge_success("tly-charge0001", gateway_id=4099260516),
            ("charge.success", "tly-charge0001", "4099260516"),
        ),
        (
            {
                "event": "refund.processed",
                "data": {
                    "status": "processed",
                    "transaction_reference": "tly-refund0001",
                    "refund_reference": "132013318360",
                    "amount": "50000",
                    "currency": "NGN",
                },
            },
            ("refund.processed", "tly-refund0001", "132013318360"),
        ),
        (
            {
                "event": "charge.dispute.create",
                "data": {
                    "id": 358950,
                    "transaction_reference": None,
                    "transaction": {"id": 4099260516, "reference": "tly-dispute001"},
                },
            },
            ("charge.dispute.create", "tly-dispute001", "358950"),
        ),
    ],
    ids=["charge.success", "refund.processed", "charge.dispute.create"],
)
def test_event_reference_and_gateway_id_are_extracted(signed_post, event, expected):
    body = event_bytes(event)

    assert signed_post(body).status_code == 200

    delivery = Delivery.objects.get()
    assert (delivery.event, delivery.reference, delivery.gateway_id) == expected
    assert delivery.payload == event


# --- what counts as the same delivery ----------------------------------------------------


def refund_pending(**data: object) -> dict:
    fields = {
        "status": "pending",
        "transaction_reference": "tly-refund0002",
        "refund_reference": None,
        "amount": 50000,
        **data,
    }
    return {"event": "refund.pending", "data": fields}


def test_a_second_refund_pending_with_a_different_body_is_a_new_delivery(signed_post):
    first = signed_post(event_bytes(refund_pending(amount=20000)))
    second = signed_post(event_bytes(refund_pending(amount=30000)))

    assert (first.json()["repeat"], second.json()["repeat"]) == (False, False)
    assert Delivery.objects.filter(event="refund.pending").count() == 2


def test_a_charge_success_with_the_same_id_and_reference_in_other_whitespace_is_a_repeat(
    signed_post,
):
    event = charge_success("tly-spacing001")

    first = signed_post(event_bytes(event))
    second = signed_post(event_bytes(event, indent=4))

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["repeat"] is True
    delivery = Delivery.objects.get()
    assert delivery.delivery_count == 2
    assert delivery.raw_body.encode() == event_bytes(event)  # the first body is kept


# --- the database is down ----------------------------------------------------------------


def test_database_unavailable_gets_503_and_stores_nothing(signed_post):
    with patch(
        "webhooks.views.record_delivery",
        side_effect=OperationalError("connection to server at 127.0.0.1 failed"),
    ):
        response = signed_post(a_charge())

    assert response.status_code == 503
    assert "database" in error_of(response)
    assert_nothing_stored()
