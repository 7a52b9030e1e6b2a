"""Transactions in the sandbox: ids past 2**63, paid after abandoned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from sandbox.server import start_in_thread
from tests.sandbox.helpers import SECRET, Client, Receiver


def test_ids_can_pass_the_signed_64_bit_range(api: Client) -> None:
    big = 2**63 + 5  # past BIGINT: an app must store it as NUMERIC(20) or refuse it
    assert api.control("next-id", {"id": big}) == {"next_id": big}
    data = api.verify(api.paid()).json()["data"]
    assert data["id"] == big
    assert api.get(f"/transaction/{big}").json()["data"]["reference"] == data["reference"]
    assert api.get("/transaction").json()["data"][0]["id"] == big
    for bad in (big, 2**64, True, "9"):  # never backwards (ids never repeat), unsigned 64-bit
        response = requests.post(f"{api.base}/_sandbox/next-id", json={"id": bad}, timeout=5)
        assert response.status_code == 400, bad
    api.control("reset")
    assert api.verify(api.paid()).json()["data"]["id"] == big + 1  # not reused after a reset


def test_abandoned_payment_completed_later_is_paid_then(api: Client, receiver: Receiver) -> None:
    reference = api.paid(status="pending", created_at="2025-03-14T18:00:00Z")
    assert api.control(f"transactions/{reference}/abandon")["status"] == "abandoned"
    abandoned = api.verify(reference).json()["data"]
    assert (abandoned["status"], abandoned["paid_at"]) == ("abandoned", None)

    before = datetime.now(UTC) - timedelta(seconds=1)
    api.control(f"transactions/{reference}/pay")
    [(_, _, event)] = receiver.wait_for(1)
    paid = api.verify(reference).json()["data"]
    assert event["event"] == "charge.success" and event["data"] == paid
    assert paid["status"] == "success"
    assert datetime.fromisoformat(paid["paid_at"]) >= before  # completion time, not creation
    assert paid["created_at"] == "2025-03-14T18:00:00.000Z"
    again = requests.post(f"{api.base}/_sandbox/transactions/{reference}/abandon", timeout=5)
    assert again.status_code == 409  # paid is final


def test_checkout_pays_an_abandoned_payment(api: Client, receiver: Receiver) -> None:
    init = api.post("/transaction/initialize", json={"email": "a@b.c", "amount": 700}).json()
    assert api.verify(init["data"]["reference"]).json()["data"]["status"] == "abandoned"
    requests.post(f"{init['data']['authorization_url']}/pay", timeout=5)
    assert receiver.wait_for(1)[0][2]["event"] == "charge.success"
    assert api.verify(init["data"]["reference"]).json()["data"]["status"] == "success"


def test_a_sandbox_started_at_the_last_id_refuses_to_go_past_it() -> None:
    with pytest.raises(ValueError):
        start_in_thread("127.0.0.1", 0, SECRET, "http://127.0.0.1:9/", first_id=2**64)
    server = start_in_thread("127.0.0.1", 0, SECRET, "http://127.0.0.1:9/", first_id=2**64 - 1)
    try:
        client = Client(server.url)
        assert client.verify(client.paid()).json()["data"]["id"] == 2**64 - 1
        response = client.session.post(
            f"{server.url}/_sandbox/transactions", json={"reference": "one-more", "amount": 1}
        )
        assert response.status_code == 500
        assert response.json()["message"] == f"The sandbox has used every id up to {2**64 - 1}"
    finally:
        server.shutdown()
        server.server_close()
