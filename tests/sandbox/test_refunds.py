"""Refunds in the sandbox: partial ones adding up, the refund API, webhooks, a gateway that lags."""

from __future__ import annotations

import time
from typing import Any

from tests.sandbox.helpers import Client, Receiver, signature_ok


def refund_events(receiver: Receiver, n: int) -> list[dict[str, Any]]:
    """The first ``n`` refund webhooks received, as (event, data) dicts, checked signed."""
    found = receiver.wait_for(n, lambda e: e["event"].startswith("refund."))
    assert all(signature_ok(headers, raw) for headers, raw, _ in found)
    return [event for _, _, event in found]


def verify_status(api: Client, reference: str) -> str:
    return api.verify(reference).json()["data"]["status"]


def refund_record(api: Client, refund_id: int) -> dict[str, Any]:
    return api.get(f"/refund/{refund_id}").json()["data"]


def test_partial_refunds_add_up_and_reverse_the_transaction_only_when_whole(
    api: Client, receiver: Receiver
) -> None:
    reference = api.paid(amount=10000)
    tx_id = api.verify(reference).json()["data"]["id"]

    first = api.post("/refund", json={"transaction": reference, "amount": 4000}).json()["data"]
    assert (first["status"], first["amount"], first["refund_type"]) == ("pending", 4000, "partial")
    assert first["transaction"]["reference"] == reference  # the whole transaction, embedded
    [processed] = refund_events(receiver, 1)
    assert processed["event"] == "refund.processed"
    assert processed["data"]["amount"] == "4000"
    assert processed["data"]["transaction_reference"] == reference
    assert verify_status(api, reference) == "success"  # 6000 of the payment still stands
    assert refund_record(api, first["id"])["status"] == "processed"

    too_much = api.post("/refund", json={"transaction": tx_id, "amount": 6001})
    assert (too_much.status_code, too_much.json()["message"]) == (
        400,
        "Refund amount cannot be more than the transaction amount",
    )
    rest = api.post("/refund", json={"transaction": tx_id}).json()["data"]  # what is left
    assert rest["amount"] == 6000
    second = refund_events(receiver, 2)[1]
    assert second["data"]["amount"] == "6000"
    assert second["data"]["refund_reference"] != processed["data"]["refund_reference"]
    assert verify_status(api, reference) == "reversed"

    listed = api.get("/refund", params={"transaction": tx_id}).json()
    assert [(r["id"], r["amount"], r["status"]) for r in listed["data"]] == [
        (rest["id"], 6000, "processed"),
        (first["id"], 4000, "processed"),
    ]
    assert listed["meta"] == {
        "total": 2,
        "skipped": 0,
        "perPage": "50",
        "page": 1,
        "pageCount": 1,
        "failedRefundCount": 0,
    }
    assert api.get("/refund", params={"transaction": reference}).json()["data"] == listed["data"]
    again = api.post("/refund", json={"transaction": reference})
    assert again.json()["message"] == "Transaction has been fully reversed"
    missing = api.get("/refund/1")
    assert (missing.status_code, missing.json()["message"]) == (404, "Refund not found")


def test_any_processed_refund_reverses_when_configured(api: Client) -> None:
    api.control("config", {"reverse_on_partial_refund": True})
    reference = api.paid(amount=10000)
    api.post("/refund", json={"transaction": reference, "amount": 100})
    assert verify_status(api, reference) == "reversed"


def test_refund_processed_webhook_before_the_gateway_shows_it(
    api: Client, receiver: Receiver
) -> None:
    reference = api.paid(amount=5000)
    refund = api.control("refunds", {"transaction": reference, "lag": "all"})
    assert refund_events(receiver, 1)[0]["event"] == "refund.processed"
    assert refund_record(api, refund["id"])["status"] == "pending"
    assert verify_status(api, reference) == "success"

    caught_up = api.control(f"refunds/{refund['id']}/catch-up")
    assert (caught_up["status"], caught_up["refunded_at"] is not None) == ("processed", True)
    assert verify_status(api, reference) == "reversed"


def test_verify_catches_up_after_a_delay(api: Client, receiver: Receiver) -> None:
    reference = api.paid(amount=5000)
    refund = api.control(
        "refunds", {"transaction": reference, "lag": "verify", "catch_up_after": 0.3}
    )
    assert refund["status"] == "processed"  # the refund record already says so
    assert verify_status(api, reference) == "success"
    deadline = time.monotonic() + 5
    while verify_status(api, reference) != "reversed":
        assert time.monotonic() < deadline, "verify never caught up"
        time.sleep(0.05)


def test_refund_that_fails_after_pending_and_processing(api: Client, receiver: Receiver) -> None:
    reference = api.paid(amount=5000, email="voter@example.com")
    body = {"transaction": reference, "steps": ["pending", "processing"], "outcome": "failed"}
    refund = api.control("refunds", body)
    events = refund_events(receiver, 3)
    assert [e["event"] for e in events] == ["refund.pending", "refund.processing", "refund.failed"]
    pending, processing, failed = (e["data"] for e in events)
    assert (pending["refund_reference"], pending["amount"], pending["status"]) == (
        None,
        "5000",
        "pending",
    )
    assert (processing["refund_reference"], processing["amount"]) == (None, "5000")
    assert (failed["amount"], failed["status"]) == (5000, "failed")  # a number here
    assert failed["refund_reference"]
    assert "id" not in failed
    assert refund["status"] == "failed"
    assert verify_status(api, reference) == "success"
    # A failed refund gives its amount back: the whole payment can be refunded again.
    assert api.post("/refund", json={"transaction": reference}).json()["data"]["amount"] == 5000


def test_refund_needing_attention_is_finished_later(api: Client, receiver: Receiver) -> None:
    reference = api.paid(amount=5306)
    refund = api.control("refunds", {"transaction": reference, "outcome": "needs-attention"})
    [attention] = refund_events(receiver, 1)
    assert attention["event"] == "refund.needs-attention"
    assert attention["data"]["id"] == str(refund["id"])  # a string, unlike the refund record
    assert attention["data"]["amount"] == 5306
    assert attention["data"]["customer_note"] == f"Refund for transaction {reference}"
    assert (refund["status"], verify_status(api, reference)) == ("needs-attention", "success")

    finished = api.control(f"refunds/{refund['id']}/finish", {"outcome": "processed"})
    assert finished["status"] == "processed"
    assert refund_events(receiver, 2)[1]["event"] == "refund.processed"
    assert verify_status(api, reference) == "reversed"
    response = api.session.post(f"{api.base}/_sandbox/refunds/{refund['id']}/finish", json={})
    assert (response.status_code, response.json()["message"]) == (
        409,
        f"Refund {refund['id']} is already processed",
    )


def test_refund_in_flight_sends_only_its_steps(api: Client, receiver: Receiver) -> None:
    reference = api.paid(amount=5000)
    body = {"transaction": reference, "steps": ["pending"], "outcome": "pending"}
    refund = api.control("refunds", body)
    assert refund_events(receiver, 1)[0]["event"] == "refund.pending"
    time.sleep(0.2)  # time for an outcome's webhook, had one been made
    assert len(receiver.wait_for(1)) == 1
    assert refund_record(api, refund["id"])["status"] == "pending"
    assert api.control(f"refunds/{refund['id']}/catch-up")["status"] == "pending"


def test_deliver_repeats_a_given_refunds_event(api: Client, receiver: Receiver) -> None:
    reference = api.paid(amount=10000)
    first = api.control("refunds", {"transaction": reference, "amount": 3000, "wait": True})
    api.control("refunds", {"transaction": reference, "amount": 2000, "wait": True})
    original = refund_events(receiver, 2)[0]["data"]
    body = {"reference": reference, "event": "refund.processed", "refund": first["id"]}
    assert api.control("deliver", {**body, "wait": True}) == {"statuses": [200]}
    assert refund_events(receiver, 3)[2]["data"] == original

    other = api.paid()
    response = api.session.post(
        f"{api.base}/_sandbox/deliver", json={**body, "reference": other}, timeout=5
    )
    assert response.status_code == 404


def test_refund_control_validates_its_plan(api: Client) -> None:
    reference = api.paid()
    for body in (
        {"transaction": reference, "outcome": "lost"},
        {"transaction": reference, "lag": "sometimes"},
        {"transaction": reference, "steps": ["processed"]},
        {"transaction": reference, "catch_up_after": -1},
        {"transaction": reference, "amount": "12.5"},
        {},
    ):
        response = api.session.post(f"{api.base}/_sandbox/refunds", json=body, timeout=5)
        assert response.status_code == 400, body
    unpaid = api.paid(status="abandoned")
    response = api.session.post(f"{api.base}/_sandbox/refunds", json={"transaction": unpaid})
    assert response.json() == {"status": False, "message": "Transaction has not been paid"}
    assert api.session.post(f"{api.base}/_sandbox/refunds/9/catch-up").status_code == 404
    assert api.control("stats", method="GET")["refunds"] == 0
