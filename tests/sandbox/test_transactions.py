"""Transactions in the sandbox: ids past 2**63, paid after abandoned, the list's two pagings."""

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


@pytest.fixture
def seven(api: Client) -> list[str]:
    """Seven paid transactions a minute apart; their references, newest first."""
    start = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
    batch = [
        {
            "reference": f"C-{i}",
            "amount": 100,
            "created_at": (start + timedelta(minutes=i)).isoformat(),
        }
        for i in range(7)
    ]
    api.control("transactions", {"transactions": batch})
    return [f"C-{i}" for i in reversed(range(7))]


def test_cursor_pages_follow_next_and_previous(api: Client, seven: list[str]) -> None:
    params = {"use_cursor": "true", "perPage": 3}
    first = api.get("/transaction", params=params).json()
    assert [t["reference"] for t in first["data"]] == seven[:3]
    assert first["meta"]["previous"] is None and first["meta"]["perPage"] == 3
    assert set(first["meta"]) == {"next", "previous", "perPage"}

    pages, body = [first], first
    while body["meta"]["next"]:
        body = api.get("/transaction", params={**params, "next": body["meta"]["next"]}).json()
        pages.append(body)
    assert [[t["reference"] for t in p["data"]] for p in pages] == [
        seven[:3],
        seven[3:6],
        seven[6:],
    ]
    back = api.get("/transaction", params={**params, "previous": pages[2]["meta"]["previous"]})
    assert [t["reference"] for t in back.json()["data"]] == seven[3:6]

    # A payment arriving between two calls shifts offset pages, never cursor pages.
    api.control("transactions", {"reference": "C-new", "amount": 5})
    after = api.get("/transaction", params={**params, "next": first["meta"]["next"]}).json()
    assert [t["reference"] for t in after["data"]] == seven[3:6]
    bad = api.get("/transaction", params={**params, "next": "not-a-cursor"})
    assert (bad.status_code, bad.json()["message"]) == (400, "Invalid cursor: not-a-cursor")


def test_offset_pages_accept_per_page_and_end_empty(api: Client, seven: list[str]) -> None:
    body = api.get("/transaction", params={"per_page": 5, "page": 2}).json()
    assert [t["reference"] for t in body["data"]] == seven[5:]
    assert body["meta"] == {
        "total": 7,
        "total_volume": 700,
        "skipped": 5,
        "perPage": 5,
        "page": 2,
        "pageCount": 2,
    }
    past = api.get("/transaction", params={"per_page": 5, "page": 3}).json()
    assert past["data"] == []
    window = {"from": "2025-03-14T12:01:00Z", "to": "2025-03-14T12:02:30+00:00"}
    assert [t["reference"] for t in api.get("/transaction", params=window).json()["data"]] == [
        "C-2",
        "C-1",
    ]


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
