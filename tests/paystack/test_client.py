"""The Paystack client against a gateway stubbed at the HTTP boundary (responses)."""

from datetime import UTC, datetime
from typing import Any

import pytest
import responses

from paystack.client import PaystackClient
from paystack.errors import GatewayRejected, GatewayUnavailable, ReferenceNotFound
from tests.helpers import charge_success

BASE = "http://paystack.test"


@pytest.fixture
def client() -> PaystackClient:
    return PaystackClient(base_url=BASE, secret_key="sk_test_unit", timeout=2)


def transaction(reference: str = "tly-1", **changes: Any) -> dict[str, Any]:
    """A transaction as verify, fetch and list give it (trimmed), with `changes`."""
    return charge_success(reference, **changes)["data"]


def ok(data: Any, **extra: Any) -> dict[str, Any]:
    return {"status": True, "message": "OK", "data": data, **extra}


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
        assert not isinstance(caught.value, ReferenceNotFound)


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
    answer = ok(transaction(id=gateway_id))
    paystack.add(responses.GET, f"{BASE}/transaction/verify/tly-1", json=answer)
    verification = client.verify("tly-1")
    assert verification.gateway_id == int(gateway_id)
    assert verification.paid_at == datetime(2025, 3, 14, 18, 2, 11, tzinfo=UTC)


def test_verify_unknown_reference_is_not_found(
    client: PaystackClient, paystack: responses.RequestsMock
) -> None:
    missing = {"status": False, "message": "Transaction reference not found."}
    paystack.add(responses.GET, f"{BASE}/transaction/verify/tly-1", status=400, json=missing)
    with pytest.raises(ReferenceNotFound):
        client.verify("tly-1")
