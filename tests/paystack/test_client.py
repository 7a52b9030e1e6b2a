"""The Paystack client against a gateway stubbed at the HTTP boundary (responses)."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from paystack.client import PaystackClient
from paystack.errors import (
    GatewayRejected,
    GatewayUnavailable,
    ReferenceNotFound,
    TransactionNotFound,
)
from paystack.types import RefundRecord, Verification
from tests.helpers import charge_success

BASE = "http://paystack.test"
LIST = f"{BASE}/transaction"
SINCE = datetime(2025, 3, 1, tzinfo=UTC)
UNTIL = datetime(2025, 3, 8, 12, 30, tzinfo=UTC)


@pytest.fixture
def client() -> PaystackClient:
    return PaystackClient(base_url=BASE, secret_key="sk_test_unit", timeout=2)


def transaction(reference: str = "tly-1", **changes: Any) -> dict[str, Any]:
    """A transaction as verify, fetch and list give it (trimmed), with `changes`."""
    return charge_success(reference, **changes)["data"]


def ok(data: Any, **extra: Any) -> dict[str, Any]:
    return {"status": True, "message": "OK", "data": data, **extra}


def references(listing: Iterator[Verification]) -> list[str]:
    return [verification.reference for verification in listing]


def query(call: Any) -> dict[str, str]:
    """The query string a recorded call sent, one value per name."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html><body>Please wait</body></html>", "content_type": "text/html"},
        {"body": ""},
        {"json": ["status", True]},
        {"json": {"message": "Verification successful", "data": transaction()}},
        {"json": {"status": "true", "data": transaction()}},
    ],
    ids=["proxy-page", "empty", "not-an-object", "no-status", "status-not-bool"],
)
def test_a_2xx_the_client_cannot_read_is_retryable(
    client: PaystackClient, paystack: responses.RequestsMock, answer: dict[str, Any]
) -> None:
    paystack.add(responses.GET, f"{BASE}/transaction/verify/tly-1", status=200, **answer)
    with pytest.raises(GatewayUnavailable):
        client.verify("tly-1")


def test_a_readable_refusal_is_final(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    refusal = {"status": False, "message": "Invalid key"}
    paystack.add(responses.GET, f"{BASE}/transaction/verify/tly-1", status=200, json=refusal)
    paystack.add(responses.GET, f"{BASE}/transaction/verify/tly-2", status=401, json=refusal)
    for reference in ("tly-1", "tly-2"):
        with pytest.raises(GatewayRejected) as caught:
            client.verify(reference)
        assert not isinstance(caught.value, TransactionNotFound)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"reference": "tly-1"},
        transaction(amount="12.50"),
        transaction(amount=True),
        transaction(status=None),
        transaction(id=2**64),
        transaction(id=True),
        transaction(paid_at=1741975331),
    ],
    ids=[
        "null",
        "list",
        "partial",
        "decimal",
        "bool-amount",
        "no-status",
        "id-past-64-bits",
        "bool-id",
        "number-time",
    ],
)
def test_an_unreadable_transaction_is_retryable(
    client: PaystackClient, paystack: responses.RequestsMock, data: Any
) -> None:
    paystack.add(responses.GET, f"{BASE}/transaction/verify/tly-1", json=ok(data))
    with pytest.raises(GatewayUnavailable):
        client.verify("tly-1")


@pytest.mark.parametrize("gateway_id", [2**63, 2**64 - 1, "18446744073709551615"])
def test_gateway_ids_past_signed_64_bits_are_kept_whole(
    client: PaystackClient, paystack: responses.RequestsMock, gateway_id: int | str
) -> None:
    answer = ok(transaction(id=gateway_id, createdAt="2025-03-14T18:01:00.000Z"))
    paystack.add(responses.GET, f"{BASE}/transaction/verify/tly-1", json=answer)
    verification = client.verify("tly-1")
    assert verification.gateway_id == int(gateway_id)
    assert verification.paid_at == datetime(2025, 3, 14, 18, 2, 11, tzinfo=UTC)
    assert verification.created_at == datetime(2025, 3, 14, 18, 1, tzinfo=UTC)


def test_fetch_transaction_by_id(client: PaystackClient, paystack: responses.RequestsMock) -> None:
    big = 2**64 - 1
    paystack.add(responses.GET, f"{BASE}/transaction/{big}", json=ok(transaction(id=big)))
    paystack.add(
        responses.GET,
        f"{BASE}/transaction/4099260517",
        status=404,
        json={"status": False, "message": "Transaction not found"},
    )
    verification = client.fetch_transaction(big)
    assert (verification.gateway_id, verification.reference, verification.amount) == (
        big,
        "tly-1",
        50000,
    )
    with pytest.raises(TransactionNotFound) as caught:
        client.fetch_transaction(4_099_260_517)
    assert not isinstance(caught.value, ReferenceNotFound)


def test_fetch_refuses_what_is_not_an_id_without_asking(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    for bad in (0, -1, 2**64, True):
        with pytest.raises(TransactionNotFound):
            client.fetch_transaction(bad)
    assert len(paystack.calls) == 0


def test_verify_unknown_reference_is_not_found(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    missing = {"status": False, "message": "Transaction reference not found."}
    paystack.add(responses.GET, f"{BASE}/transaction/verify/tly-1", status=400, json=missing)
    with pytest.raises(ReferenceNotFound):
        client.verify("tly-1")


def offset_meta(page: int, page_count: int, total: int, per_page: int | str = 2) -> dict:
    return {
        "total": total,
        "total_volume": 0,
        "skipped": (page - 1) * 2,
        "perPage": per_page,
        "page": page,
        "pageCount": page_count,
    }


def test_offset_listing_drops_shifted_repeats_and_stops_at_page_count(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    a, b, c, d, e = (transaction(f"tly-{n}", id=100 + n) for n in range(5))
    # Between page 1 and 2 a payment arrived: b slid onto page 2.
    for page, items in enumerate(([a, b], [b, c], [d, e]), start=1):
        meta = offset_meta(page, page_count=3, total=5, per_page="2")
        paystack.add(responses.GET, LIST, json=ok(items, meta=meta))
    pages = list(client.transaction_pages(since=SINCE, until=UNTIL, status="success", per_page=2))
    assert [[v.reference for v in p.transactions] for p in pages] == [
        ["tly-0", "tly-1"],
        ["tly-2"],
        ["tly-3", "tly-4"],
    ]
    assert [(p.number, p.total, p.page_count) for p in pages] == [(1, 5, 3), (2, 5, 3), (3, 5, 3)]
    assert len(paystack.calls) == 3  # no page past pageCount
    assert query(paystack.calls[0]) == {
        "perPage": "2",
        "page": "1",
        "from": "2025-03-01T00:00:00.000Z",
        "to": "2025-03-08T12:30:00.000Z",
        "status": "success",
    }
    assert query(paystack.calls[2])["page"] == "3"


def test_offset_listing_without_meta_ends_on_an_empty_page(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    paystack.add(responses.GET, LIST, json=ok([transaction("tly-1", id=1)]))
    paystack.add(responses.GET, LIST, json=ok([transaction("tly-2", id=2)]))
    paystack.add(responses.GET, LIST, json=ok([]))
    assert references(client.list_transactions(since=SINCE)) == ["tly-1", "tly-2"]
    assert len(paystack.calls) == 3


def test_listing_ends_when_the_gateway_ignores_the_page_number(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    paystack.add(responses.GET, LIST, json=ok([transaction("tly-1", id=1)]))  # every time
    assert references(client.list_transactions(since=SINCE)) == ["tly-1"]
    assert len(paystack.calls) == 2


def test_cursor_meta_is_followed_until_next_is_null(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    # Paystack's samples show cursor meta even when use_cursor was not asked for.
    pages = [("dW5kZWZpbmVkOjE=", [1, 2]), ("dW5kZWZpbmVkOjM=", [3, 4]), (None, [5])]
    for cursor, ids in pages:
        meta = {"next": cursor, "previous": None, "perPage": 2}
        items = [transaction(f"tly-{n}", id=n) for n in ids]
        paystack.add(responses.GET, LIST, json=ok(items, meta=meta))
    listed = client.list_transactions(since=SINCE, per_page=2)
    assert references(listed) == [f"tly-{n}" for n in range(1, 6)]
    assert len(paystack.calls) == 3
    second = query(paystack.calls[1])
    assert (second["next"], second["use_cursor"], "page" in second) == (
        "dW5kZWZpbmVkOjE=",
        "true",
        False,
    )


def test_cursor_listing_asks_for_cursors_and_stops_on_a_repeated_one(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    meta = {"next": "c1", "previous": None, "perPage": 50}
    paystack.add(responses.GET, LIST, json=ok([transaction("tly-1", id=1)], meta=meta))
    assert references(client.list_transactions(since=SINCE, use_cursor=True)) == ["tly-1"]
    assert len(paystack.calls) == 2  # c1 again after c1: a loop, not a listing
    assert query(paystack.calls[0])["use_cursor"] == "true"
    assert "page" not in query(paystack.calls[0])


@pytest.mark.parametrize(
    "body",
    [
        ok([transaction("tly-1"), transaction("tly-2", amount="1.5")]),
        ok({"reference": "tly-1"}),
        {"data": [transaction()]},
    ],
    ids=["unreadable-item", "not-a-list", "no-status"],
)
def test_a_listing_that_cannot_be_read_is_retryable(
    client: PaystackClient, paystack: responses.RequestsMock, body: dict[str, Any]
) -> None:
    paystack.add(responses.GET, LIST, json=body)
    with pytest.raises(GatewayUnavailable):
        list(client.list_transactions(since=SINCE))


def test_listing_bounds_must_be_aware(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        list(client.list_transactions(since=datetime(2025, 3, 1)))
    assert len(paystack.calls) == 0


def refund(refund_id: int, transaction_id: int, **changes: Any) -> dict[str, Any]:
    """A refund record as GET /refund gives it (trimmed)."""
    return {
        "id": refund_id,
        "integration": 412829,
        "domain": "test",
        "transaction": transaction_id,
        "transaction_reference": f"tly-{transaction_id}",
        "amount": 4000,
        "currency": "NGN",
        "status": "processed",
        "refunded_at": "2025-03-15T10:00:00.000Z",
        **changes,
    }


def test_list_refunds_keeps_only_the_transactions_own(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    big = 2**64 - 1
    records = [
        refund(7, big, amount="4000"),  # a string amount, as refund events send
        refund(6, 99),  # another transaction's: a gateway that ignored the filter
        refund(5, big, amount=6000, status="pending", refunded_at=None),
    ]
    meta = {"total": 3, "skipped": 0, "perPage": "100", "page": 1, "pageCount": 1}
    paystack.add(responses.GET, f"{BASE}/refund", json=ok(records, meta=meta))
    first, second = client.list_refunds(transaction_id=big)
    assert first == RefundRecord(
        id=7,
        transaction_id=big,
        transaction_reference=f"tly-{big}",
        amount=4000,
        currency="NGN",
        status="processed",
        refunded_at=datetime(2025, 3, 15, 10, tzinfo=UTC),
    )
    assert (second.id, second.amount, second.status, second.refunded_at) == (
        5,
        6000,
        "pending",
        None,
    )
    assert query(paystack.calls[0]) == {"transaction": str(big), "perPage": "100", "page": "1"}


def test_list_refunds_pages_until_page_count(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    for page, refund_id in ((1, 2), (2, 1)):
        meta = {"total": 2, "perPage": "1", "page": page, "pageCount": 2}
        paystack.add(responses.GET, f"{BASE}/refund", json=ok([refund(refund_id, 9)], meta=meta))
    assert [r.id for r in client.list_refunds(transaction_id=9)] == [2, 1]
    assert len(paystack.calls) == 2


def test_fetch_refund_reads_an_embedded_transaction(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    embedded = refund(3, 0, transaction=transaction("tly-9", id=9), transaction_reference=None)
    paystack.add(responses.GET, f"{BASE}/refund/3", json=ok(embedded))
    record = client.fetch_refund(3)
    assert (record.transaction_id, record.transaction_reference) == (9, "tly-9")


@pytest.mark.parametrize(
    "changes",
    [{"amount": "12.5"}, {"amount": 12.5}, {"id": None}, {"status": None}, {"transaction": "x"}],
    ids=["decimal-string", "float", "no-id", "no-status", "bad-transaction"],
)
def test_an_unreadable_refund_is_retryable(
    client: PaystackClient, paystack: responses.RequestsMock, changes: dict[str, Any]
) -> None:
    paystack.add(responses.GET, f"{BASE}/refund/3", json=ok(refund(3, 9, **changes)))
    with pytest.raises(GatewayUnavailable):
        client.fetch_refund(3)


def test_every_call_carries_the_secret_key_as_a_bearer_token(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    paystack.get(f"{BASE}/transaction/verify/tly-1", json=ok(transaction()))
    paystack.get(f"{BASE}/transaction/verify/tly-2", json=ok(transaction("tly-2")))

    client.verify("tly-1")
    client.verify("tly-2")

    sent = [call.request.headers["Authorization"] for call in paystack.calls]
    assert sent == ["Bearer sk_test_unit", "Bearer sk_test_unit"]
