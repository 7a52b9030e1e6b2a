"""Disputes (chargebacks) in the sandbox: opened, reminded, resolved, events sent in any order."""

from __future__ import annotations

from typing import Any

from tests.sandbox.helpers import Client, Receiver, signature_ok


def dispute_events(receiver: Receiver, n: int) -> list[tuple[bytes, dict[str, Any]]]:
    found = receiver.wait_for(n, lambda e: e["event"].startswith("charge.dispute."))
    assert all(signature_ok(headers, raw) for headers, raw, _ in found)
    return [(raw, event) for _, raw, event in found]


def verify_status(api: Client, reference: str) -> str:
    return api.verify(reference).json()["data"]["status"]


def test_lost_dispute_reverses_the_transaction(api: Client, receiver: Receiver) -> None:
    reference = api.paid(amount=5800)
    opened = api.control("disputes", {"transaction": reference, "wait": True})
    dispute_id = opened["id"]
    api.control(f"disputes/{dispute_id}/remind", {"wait": True})
    assert verify_status(api, reference) == "success"  # the votes stay while it is open
    resolved = api.control(f"disputes/{dispute_id}/resolve", {"outcome": "lost", "wait": True})
    assert verify_status(api, reference) == "reversed"

    events = [event for _, event in dispute_events(receiver, 3)]
    names = [event["event"] for event in events]
    assert names == ["charge.dispute.create", "charge.dispute.remind", "charge.dispute.resolve"]
    create, remind, resolve = (event["data"] for event in events)
    assert create == opened and resolve == resolved
    for data in (create, remind, resolve):
        assert data["id"] == dispute_id
        assert data["transaction"]["reference"] == reference  # the only place it is given
        assert data["transaction_reference"] is None
    assert (create["status"], create["resolution"], create["transaction"]["status"]) == (
        "awaiting-merchant-feedback",
        None,
        "success",
    )
    assert (resolve["status"], resolve["resolution"], resolve["transaction"]["status"]) == (
        "resolved",
        "merchant-accepted",
        "reversed",
    )
    assert resolve["resolvedAt"] and resolve["refund_amount"] == 5800


def test_won_dispute_leaves_the_transaction_paid(api: Client, receiver: Receiver) -> None:
    reference = api.paid()
    dispute_id = api.control("disputes", {"transaction": reference})["id"]
    resolved = api.control(f"disputes/{dispute_id}/resolve", {"outcome": "won"})
    assert (resolved["resolution"], resolved["transaction"]["status"]) == ("declined", "success")
    assert verify_status(api, reference) == "success"
    again = api.session.post(
        f"{api.base}/_sandbox/disputes/{dispute_id}/resolve", json={"outcome": "lost"}
    )
    assert (again.status_code, again.json()["message"]) == (
        409,
        f"Dispute {dispute_id} is resolved",
    )


def test_dispute_events_resent_in_any_order_are_byte_identical(
    api: Client, receiver: Receiver
) -> None:
    reference = api.paid()
    dispute_id = api.control("disputes", {"transaction": reference, "send": False})["id"]
    early = api.session.post(
        f"{api.base}/_sandbox/disputes/{dispute_id}/send", json={"event": "resolve"}
    )
    assert early.status_code == 409  # not resolved yet: there is no such event to send
    body = {"outcome": "lost", "resolution": "auto-accepted", "send": False}
    api.control(f"disputes/{dispute_id}/resolve", body)
    assert receiver.posts == []  # nothing sent so far

    order = ["resolve", "create", "charge.dispute.resolve"]
    for event in order:
        sent = api.control(f"disputes/{dispute_id}/send", {"event": event, "wait": True})
        assert sent == {"statuses": [200]}
    received = dispute_events(receiver, 3)
    assert [event["event"] for _, event in received] == [
        "charge.dispute.resolve",
        "charge.dispute.create",
        "charge.dispute.resolve",
    ]
    assert received[0][0] == received[2][0]  # the same bytes: a true duplicate
    assert received[0][1]["data"]["resolution"] == "auto-accepted"
    assert received[1][1]["data"]["transaction"]["status"] == "success"  # as it was at create


def test_disputes_need_a_paid_transaction(api: Client) -> None:
    def open_on(transaction: str) -> Any:
        return api.session.post(f"{api.base}/_sandbox/disputes", json={"transaction": transaction})

    assert open_on("tly-unknown").status_code == 404
    assert open_on(api.paid(status="abandoned")).status_code == 409
    reference = api.paid()
    dispute_id = api.control("disputes", {"transaction": reference, "send": False})["id"]
    bad = api.session.post(f"{api.base}/_sandbox/disputes/{dispute_id}/resolve", json={})
    assert bad.status_code == 400  # lost or won must be said
    assert api.session.post(f"{api.base}/_sandbox/disputes/1/remind", json={}).status_code == 404
    assert api.control("stats", method="GET")["disputes"] == 1
