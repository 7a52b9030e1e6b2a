"""The Paystack sandbox, over real HTTP: API shapes, checkout, signed webhooks, faults, controls.

No Django needed: ``python -m pytest tests/sandbox -p no:django``.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.sandbox.helpers import ROOT, SECRET, Client, Receiver, ref, signature_ok


def test_health_and_auth(api: Client) -> None:
    assert api.control("health", method="GET") == {"ok": True}
    for headers in ({}, {"Authorization": "Bearer sk_test_wrong"}):
        response = requests.get(f"{api.base}/transaction/verify/x", headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.json() == {"status": False, "message": "Invalid key"}


def test_initialize_validation_and_duplicates(api: Client) -> None:
    for body in (
        {"amount": 500},
        {"email": "a@b.c"},
        {"email": "a@b.c", "amount": 0},
        {"email": "a@b.c", "amount": "12.50"},
        {"email": "a@b.c", "amount": 12.5},
        {"email": "a@b.c", "amount": True},
    ):
        response = api.post("/transaction/initialize", json=body)
        assert response.status_code == 400, body
        assert response.json()["status"] is False
    reference = ref()
    first = api.post(
        "/transaction/initialize", json={"email": "a@b.c", "amount": "500", "reference": reference}
    )
    assert first.status_code == 200
    again = api.post(
        "/transaction/initialize", json={"email": "a@b.c", "amount": 500, "reference": reference}
    )
    assert again.status_code == 400
    assert again.json() == {
        "status": False,
        "message": "Duplicate Transaction Reference",
        "code": "duplicate_reference",
    }
    generated = api.post("/transaction/initialize", json={"email": "a@b.c", "amount": 500})
    assert generated.json()["data"]["reference"]
    tx = api.verify(generated.json()["data"]["reference"]).json()["data"]
    assert (tx["status"], tx["currency"], tx["paid_at"]) == ("abandoned", "NGN", None)


def test_checkout_pay_redirects_and_sends_signed_webhook(api: Client, receiver: Receiver) -> None:
    reference, metadata = ref(), {"payment": 812, "contestant": 7, "votes": 5, "name": "Adé"}
    response = api.post(
        "/transaction/initialize",
        json={
            "email": "voter@example.com",
            "amount": 50000,
            "reference": reference,
            "callback_url": "http://tally.test/pay/done/",
            "metadata": metadata,
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["message"]) == (True, "Authorization URL created")
    data = body["data"]
    assert data["reference"] == reference
    assert data["authorization_url"] == f"{api.base}/checkout/{data['access_code']}"

    page = requests.get(data["authorization_url"], timeout=5)
    assert page.status_code == 200
    assert "<title>Sandbox checkout</title>" in page.text
    assert 'id="pay"' in page.text and 'id="decline"' in page.text
    assert "NGN 500.00" in page.text and reference in page.text

    paid = requests.post(f"{data['authorization_url']}/pay", allow_redirects=False, timeout=5)
    assert paid.status_code == 302
    location = urlsplit(paid.headers["Location"])
    assert location.path == "/pay/done/"
    assert parse_qs(location.query) == {"trxref": [reference], "reference": [reference]}

    [(headers, raw, event)] = receiver.wait_for(1)
    assert headers["content-type"] == "application/json"
    assert signature_ok(headers, raw)
    assert event["event"] == "charge.success"
    tx = event["data"]
    assert tx["id"] > 2**32
    assert (tx["status"], tx["reference"], tx["amount"], tx["currency"]) == (
        "success",
        reference,
        50000,
        "NGN",
    )
    assert (tx["domain"], tx["customer"]["email"], tx["metadata"]) == (
        "test",
        "voter@example.com",
        metadata,
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", tx["paid_at"])
    assert api.verify(reference).json()["data"] == tx


def test_checkout_decline_sends_no_webhook(api: Client) -> None:
    init = api.post("/transaction/initialize", json={"email": "a@b.c", "amount": 700})
    data = init.json()["data"]
    declined = requests.post(f"{data['authorization_url']}/decline", timeout=5)
    assert declined.status_code == 200 and "Declined" in declined.text  # no callback_url given
    assert api.verify(data["reference"]).json()["data"]["status"] == "failed"
    assert api.control("stats", method="GET")["webhooks"]["sent"] == 0
    assert requests.get(f"{api.base}/checkout/nope", timeout=5).status_code == 404


def test_verify_and_fetch_by_id_report_the_same_transaction(api: Client) -> None:
    reference = api.paid(amount=2500, currency="GHS", metadata={"votes": 1})
    body = api.verify(reference).json()
    assert (body["status"], body["message"]) == (True, "Verification successful")
    data = body["data"]
    assert (data["reference"], data["status"], data["currency"], data["metadata"]) == (
        reference,
        "success",
        "GHS",
        {"votes": 1},
    )
    assert data["amount"] == data["requested_amount"] == 2500
    fetched = api.get(f"/transaction/{data['id']}")
    assert fetched.json() == {"status": True, "message": "Transaction retrieved", "data": data}
    assert api.get(f"/transaction/{data['id']}/").json()["data"] == data  # pypaystack2's URL

    missing = api.verify("tly-unknown")
    assert missing.status_code == 400
    assert missing.json() == {
        "status": False,
        "message": "Transaction reference not found",
        "code": "transaction_not_found",
    }
    empty = api.get("/transaction/verify/")
    assert empty.status_code == 400
    assert empty.json() == {"status": False, "message": "Transaction ID should be numeric"}
    assert api.get("/transaction/tly-unknown").json() == empty.json()
    unknown = api.get(f"/transaction/{data['id'] + 1000}")
    assert unknown.status_code == 404
    assert unknown.json() == {"status": False, "message": "Transaction not found"}


def test_list_pagination_status_and_dates(api: Client) -> None:
    batch = [
        {"reference": f"L-{i}", "amount": 100 + i, "created_at": f"2025-03-1{i}T12:00:00Z"}
        for i in range(5)
    ] + [{"reference": "L-failed", "amount": 9, "status": "failed", "created_at": "2025-03-15"}]
    assert api.control("transactions", {"transactions": batch}) == {"created": 6}

    first = api.get("/transaction", params={"perPage": 2, "page": 1}).json()
    assert first["message"] == "Transactions retrieved"
    assert first["meta"] == {
        "total": 6,
        "total_volume": 519,
        "skipped": 0,
        "perPage": 2,
        "page": 1,
        "pageCount": 3,
    }
    assert [t["reference"] for t in first["data"]] == ["L-failed", "L-4"]  # newest first
    third = api.get("/transaction", params={"perPage": 2, "page": 3}).json()
    assert [t["reference"] for t in third["data"]] == ["L-1", "L-0"]

    success = api.get("/transaction", params={"status": "success", "perPage": 50}).json()
    assert success["meta"]["total"] == 5
    assert {t["status"] for t in success["data"]} == {"success"}

    window = api.get("/transaction", params={"from": "2025-03-11T00:00:00", "to": "2025-03-13"})
    assert [t["reference"] for t in window.json()["data"]] == ["L-3", "L-2", "L-1"]


def test_refund_sends_refund_processed_and_verify_says_reversed(
    api: Client, receiver: Receiver
) -> None:
    reference = api.paid(amount=50000, email="voter@example.com")
    response = api.post("/refund", json={"transaction": reference})
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Refund has been queued for processing"
    assert (body["data"]["status"], body["data"]["amount"]) == ("pending", 50000)
    assert body["data"]["transaction"]["reference"] == reference

    [(headers, raw, event)] = receiver.wait_for(1)
    assert signature_ok(headers, raw)
    assert event["event"] == "refund.processed"
    data = event["data"]
    assert data["amount"] == "50000"  # a string, unlike charge.success
    assert re.fullmatch(r"\d{12}", data["refund_reference"])
    assert (data["status"], data["transaction_reference"], data["currency"]) == (
        "processed",
        reference,
        "NGN",
    )
    assert data["customer"] == {"first_name": None, "last_name": None, "email": "voter@example.com"}
    assert api.verify(reference).json()["data"]["status"] == "reversed"
    assert api.post("/refund", json={"transaction": reference}).status_code == 400

    unpaid = api.paid(status="abandoned")
    refused = api.post("/refund", json={"transaction": unpaid})
    assert (refused.status_code, refused.json()["message"]) == (
        400,
        "Transaction has not been paid",
    )
    unknown = api.post("/refund", json={"transaction": "nope"})
    assert (unknown.status_code, unknown.json()["message"]) == (400, "Transaction not found")

    by_id = api.verify(api.paid(amount=300)).json()["data"]["id"]
    assert api.post("/refund", json={"transaction": by_id}).status_code == 200


def test_fault_500_for_next_n_calls_then_normal(api: Client) -> None:
    reference = api.paid()
    api.control("faults", {"endpoint": "verify", "fault": "500", "count": 2})
    for _ in range(2):
        response = api.verify(reference)
        assert response.status_code == 500
        assert response.json() == {"status": False, "message": "Internal server error"}
    assert api.verify(reference).status_code == 200
    assert api.control("stats", method="GET")["faults_served"] == 2


def test_fault_429_has_retry_after(api: Client) -> None:
    api.control("faults", {"endpoint": "any", "fault": "429", "count": 1, "retry_after": 7})
    response = api.get("/transaction")
    assert response.status_code == 429
    assert response.json() == {
        "status": False,
        "message": "Rate limit exceeded!",
        "code": "rate_limited",
    }
    assert response.headers["Retry-After"] == response.headers["x-ratelimit-reset"] == "7"
    assert api.get("/transaction").status_code == 200


def test_fault_timeout_trips_the_client_timeout(api: Client) -> None:
    reference = api.paid()
    api.control("faults", {"endpoint": "verify", "fault": "timeout", "count": 1, "delay": 1})
    with pytest.raises(requests.Timeout):
        api.get(f"/transaction/verify/{reference}", timeout=0.5)
    assert api.verify(reference).status_code == 200


@pytest.mark.parametrize("kind", ["200_html", "200_no_status"])
def test_garbled_200_faults_answer_any_endpoint(api: Client, kind: str) -> None:
    reference = api.paid()
    tx_id = api.verify(reference).json()["data"]["id"]
    paths = [f"/transaction/verify/{reference}", f"/transaction/{tx_id}", "/transaction", "/refund"]
    api.control("faults", {"endpoint": "any", "fault": kind, "count": len(paths)})
    for path in paths:
        response = api.get(path)
        assert response.status_code == 200, path
        if kind == "200_html":  # a proxy's page, not Paystack's JSON
            assert response.headers["Content-Type"].startswith("text/html")
            assert "<html>" in response.text
        else:
            assert "status" not in response.json()
    assert api.verify(reference).json()["status"] is True


def test_faults_target_one_endpoint(api: Client) -> None:
    reference = api.paid()
    tx_id = api.verify(reference).json()["data"]["id"]
    api.control("faults", {"endpoint": "fetch", "fault": "500", "count": 1})
    assert api.verify(reference).status_code == 200
    assert api.get(f"/transaction/{tx_id}").status_code == 500
    refund = api.post("/refund", json={"transaction": reference, "amount": 100}).json()["data"]
    api.control("faults", {"endpoint": "refund_fetch", "fault": "500", "count": 1})
    assert api.get("/refund", params={"transaction": tx_id}).status_code == 200
    assert api.get(f"/refund/{refund['id']}").status_code == 500
    assert api.get(f"/refund/{refund['id']}").status_code == 200
    calls = api.control("stats", method="GET")["calls"]
    assert (calls["fetch"], calls["refund"], calls["refund_list"], calls["refund_fetch"]) == (
        1,
        1,
        1,
        2,
    )
    response = requests.post(
        f"{api.base}/_sandbox/faults", json={"endpoint": "checkout", "fault": "500"}, timeout=5
    )
    assert response.status_code == 400


def test_reference_fault_spares_other_references(api: Client) -> None:
    hit, spared = api.paid(), api.paid()
    api.control("faults", {"endpoint": "verify", "reference": hit, "fault": "500", "count": 3})
    assert api.verify(spared).status_code == 200
    assert api.verify(hit).status_code == 500
    assert api.control("faults", method="GET")["faults"][0]["count"] == 2
    api.control("faults", method="DELETE")
    assert api.verify(hit).status_code == 200


def test_overrides_change_what_verify_and_list_report(api: Client) -> None:
    reference = api.paid(amount=30050)
    api.control("overrides", {"reference": reference, "amount": 40333, "currency": "USD"})
    api.control("overrides", {"reference": reference, "status": "abandoned"})
    data = api.verify(reference).json()["data"]
    assert (data["amount"], data["requested_amount"], data["currency"], data["status"]) == (
        40333,
        30050,
        "USD",
        "abandoned",
    )
    listed = api.get("/transaction", params={"status": "abandoned"}).json()["data"]
    assert [t["reference"] for t in listed] == [reference]


def test_times_delivers_k_identical_copies(api: Client, receiver: Receiver) -> None:
    api.control("config", {"webhook_times": 3})
    reference = api.paid(status="abandoned")
    assert api.control(f"transactions/{reference}/pay") == {
        "reference": reference,
        "status": "success",
    }
    copies = receiver.wait_for(3)
    assert len({raw for _, raw, _ in copies}) == 1
    assert all(signature_ok(headers, raw) for headers, raw, _ in copies)


def test_deliver_out_of_order_and_wait_for_statuses(api: Client, receiver: Receiver) -> None:
    reference = api.paid(status="abandoned")
    for event in ("refund.processed", "charge.success"):
        body = {"reference": reference, "event": event, "times": 2, "wait": True}
        assert api.control("deliver", body) == {"statuses": [200, 200]}
    events = [e["event"] for _, _, e in receiver.wait_for(4)]
    assert events == ["refund.processed"] * 2 + ["charge.success"] * 2


def test_failed_deliveries_are_retried(api: Client, receiver: Receiver) -> None:
    receiver.answers.extend([500, 503])
    reference = api.paid()
    body = {"reference": reference, "wait": True}
    assert api.control("deliver", body) == {"statuses": [200]}
    assert api.control("stats", method="GET")["webhooks"] == {
        "sent": 3,
        "ok": 1,
        "failed": 2,
        "in_flight": 0,
    }


def test_late_delivery(api: Client, receiver: Receiver) -> None:
    reference = api.paid(status="abandoned")
    api.control("overrides", {"reference": reference, "webhook_delay": 0.3})
    started = time.monotonic()
    api.control(f"transactions/{reference}/pay")
    assert api.control("stats", method="GET")["webhooks"]["sent"] == 0  # not yet
    receiver.wait_for(1)
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    assert api.control("deliver", {"reference": reference, "delay": 0.2, "wait": True})
    assert time.monotonic() - started >= 0.2


def test_stats_count_calls_per_reference(api: Client) -> None:
    a, b = api.paid(), api.paid()
    for reference in (a, a, a, b):
        api.verify(reference)
    api.get("/transaction")
    stats = api.control("stats", method="GET")
    assert stats["calls"] == {
        "initialize": 0,
        "verify": 4,
        "fetch": 0,
        "list": 1,
        "refund": 0,
        "refund_list": 0,
        "refund_fetch": 0,
    }
    assert stats["verify_by_reference"] == {a: 3, b: 1}
    assert stats["transactions"] == 2


def test_reset_forgets_everything_and_restores_config(api: Client, receiver: Receiver) -> None:
    reference = api.paid()
    api.verify(reference)
    api.control("faults", {"endpoint": "verify", "fault": "500", "count": 5})
    api.control("config", {"webhook_times": 4, "webhook_url": "http://127.0.0.1:9/"})
    api.control("reset")
    assert api.control("faults", method="GET") == {"faults": []}
    config = api.control("config", method="GET")
    assert (config["webhook_times"], config["webhook_url"]) == (1, receiver.url)
    stats = api.control("stats", method="GET")
    assert set(stats["calls"].values()) == {0}
    assert stats == {
        "calls": stats["calls"],
        "verify_by_reference": {},
        "faults_served": 0,
        "webhooks": {"sent": 0, "ok": 0, "failed": 0, "in_flight": 0},
        "transactions": 0,
        "refunds": 0,
        "disputes": 0,
    }
    assert api.verify(reference).status_code == 400


def test_cli_serves_until_stopped() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first_id = 2**64 - 10
    argv = ["--port", str(port), "--secret-key", SECRET, "--first-id", str(first_id)]
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", *argv],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, "sandbox not up"
                time.sleep(0.05)
        assert health.json() == {"ok": True}
        client = Client(f"http://127.0.0.1:{port}")
        assert client.verify("x").status_code == 400
        assert client.verify(client.paid()).json()["data"]["id"] == first_id
    finally:
        process.terminate()
        process.wait(timeout=5)
