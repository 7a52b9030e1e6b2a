"""The Paystack client against the sandbox served on a thread: the two agree."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from paystack.client import PaystackClient
from paystack.errors import GatewayUnavailable, ReferenceNotFound, TransactionNotFound
from sandbox.server import SandboxServer, start_in_thread

SECRET = "sk_test_agreement"
START = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    # Webhooks go nowhere (a closed port) and are not retried: these tests read the API only.
    server = start_in_thread("127.0.0.1", 0, SECRET, "http://127.0.0.1:9/", webhook_retries=0)
    yield server
    server.shutdown()
    server.server_close()


class Control:
    """The sandbox's control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, path: str, body: Any = None, method: str = "POST") -> Any:
        response = requests.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=5)
        assert response.ok, response.text
        return response.json()

    def paid(self, count: int, amount: int = 10000) -> list[str]:
        """`count` paid transactions created a minute apart from START; references, newest first."""
        references = [f"tly-{n}" for n in range(count)]
        batch = [
            {
                "reference": reference,
                "amount": amount,
                "created_at": (START + timedelta(minutes=n)).isoformat(),
            }
            for n, reference in enumerate(references)
        ]
        self("transactions", {"transactions": batch})
        return references[::-1]


@pytest.fixture
def control(sandbox: SandboxServer) -> Control:
    control = Control(sandbox.url)
    control("reset")
    return control


@pytest.fixture
def gateway(sandbox: SandboxServer) -> PaystackClient:
    return PaystackClient(base_url=sandbox.url, secret_key=SECRET, timeout=5)


def test_verify_fetch_and_list_agree_past_signed_64_bits(
    control: Control, gateway: PaystackClient
) -> None:
    big = 2**63 + 3  # ids never repeat: leave the later tests room below 2**64
    control("next-id", {"id": big})
    [reference] = control.paid(1)
    verified = gateway.verify(reference)
    assert verified.gateway_id == big
    assert gateway.fetch_transaction(big) == verified
    assert list(gateway.list_transactions(since=START)) == [verified]


@pytest.mark.parametrize("use_cursor", [False, True], ids=["offset", "cursor"])
def test_listing_pages_through_the_window_once_each(
    control: Control, gateway: PaystackClient, use_cursor: bool
) -> None:
    references = control.paid(7)
    window = gateway.transaction_pages(
        since=START + timedelta(minutes=1),
        until=START + timedelta(minutes=5),
        per_page=2,
        use_cursor=use_cursor,
    )
    pages = list(window)
    listed = [v.reference for page in pages for v in page.transactions]
    assert listed == references[1:6]  # minutes 5 down to 1, newest first
    assert len(pages) == 3
    if not use_cursor:
        assert [(p.total, p.page_count) for p in pages] == [(5, 3)] * 3
    assert control("stats", method="GET")["calls"]["list"] == 3


def test_listing_filters_on_status(control: Control, gateway: PaystackClient) -> None:
    control.paid(3)
    control("refunds", {"transaction": "tly-1"})
    reversed_ = gateway.list_transactions(since=START, status="reversed")
    assert [(v.reference, v.status) for v in reversed_] == [("tly-1", "reversed")]


def test_partial_refunds_read_through_the_refund_api(
    control: Control, gateway: PaystackClient
) -> None:
    [reference] = control.paid(1, amount=10000)
    first = control("refunds", {"transaction": reference, "amount": 4000})
    in_flight = control("refunds", {"transaction": reference, "amount": 6000, "lag": "all"})
    transaction_id = gateway.verify(reference).gateway_id
    assert transaction_id is not None
    refunds = gateway.list_refunds(transaction_id=transaction_id)
    assert [(r.id, r.amount, r.status) for r in refunds] == [
        (in_flight["id"], 6000, "pending"),  # its webhook may be out; the record lags
        (first["id"], 4000, "processed"),
    ]
    assert {r.transaction_reference for r in refunds} == {reference}
    assert gateway.verify(reference).status == "success"  # partly refunded is still paid

    control(f"refunds/{in_flight['id']}/catch-up")
    assert gateway.fetch_refund(in_flight["id"]).status == "processed"
    assert gateway.verify(reference).status == "reversed"


@pytest.mark.parametrize("fault", ["200_html", "200_no_status"])
def test_garbled_answers_are_retryable(
    control: Control, gateway: PaystackClient, fault: str
) -> None:
    [reference] = control.paid(1)
    control("faults", {"endpoint": "any", "fault": fault, "count": 3})
    with pytest.raises(GatewayUnavailable):
        gateway.verify(reference)
    with pytest.raises(GatewayUnavailable):
        list(gateway.list_transactions(since=START))
    with pytest.raises(GatewayUnavailable):
        gateway.list_refunds(transaction_id=1)
    assert gateway.verify(reference).status == "success"


def test_unknown_transactions_are_not_found(control: Control, gateway: PaystackClient) -> None:
    with pytest.raises(ReferenceNotFound):
        gateway.verify("tly-unknown")
    with pytest.raises(TransactionNotFound):
        gateway.fetch_transaction(12345)
    assert gateway.list_refunds(transaction_id=12345) == []
