"""The sandbox's objects parse in a typed Paystack client.

The rules below restate what pypaystack2's pydantic models require (gray-adeyi/pypaystack2,
``src/pypaystack2/models/response_models.py``: ``Transaction``, ``Customer``,
``TransactionLog``, ``Refund``, ``Dispute``; enums in ``src/pypaystack2/enums.py``): each
required field is present with its type, and optional ones, when present, have theirs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.sandbox.helpers import Client, Receiver

DOMAINS = ("test", "live")
CURRENCIES = ("NGN", "GHS", "ZAR", "USD", "KES", "XOF", "EGP", "RWF")
DISPUTE_STATUSES = ("pending", "resolved", "awaiting-bank-feedback", "awaiting-merchant-feedback")
MISSING = object()  # what a rule sees for an absent field


def timestamp(value: Any) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value) is not None


def integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def one_of(*allowed: str) -> Any:
    return lambda value: value in allowed


def optional(check: Any) -> Any:
    return lambda value: value is None or value is MISSING or check(value)


def present(value: Any) -> bool:
    return value is not MISSING


def every(check: Any) -> Any:
    """A list whose items all pass ``check``."""
    return lambda items: isinstance(items, list) and all(check(item) for item in items)


def text(value: Any) -> bool:
    return isinstance(value, str)


CUSTOMER = {
    "id": integer,
    "email": text,
    "customer_code": text,
    "risk_action": one_of("default", "allow", "deny"),
    "first_name": optional(text),
    "metadata": optional(lambda value: isinstance(value, dict)),
}
LOG = {name: integer for name in ("start_time", "time_spent", "attempts", "errors")} | {
    "success": lambda value: isinstance(value, bool),
    "mobile": lambda value: isinstance(value, bool),
    "input": lambda value: isinstance(value, list),
    "history": every(
        lambda item: text(item["type"]) and text(item["message"]) and integer(item["time"])
    ),
}
TRANSACTION = {
    "id": integer,
    "domain": one_of(*DOMAINS),
    "reference": text,
    "amount": integer,
    "channel": text,
    "currency": one_of(*CURRENCIES),
    "customer": lambda value: conforms(value, CUSTOMER),
    "authorization": lambda value: isinstance(value, dict),
    "status": optional(text),
    "paid_at": optional(timestamp),
    "created_at": optional(timestamp),
    "gateway_response": optional(text),
    "metadata": optional(lambda value: isinstance(value, dict | str | int)),
    "log": optional(lambda value: conforms(value, LOG)),
    "fees": optional(integer),
    "requested_amount": optional(integer),
    "ip_address": optional(text),
}
REFUND = {
    "integration": integer,
    "transaction": lambda value: integer(value) or conforms(value, TRANSACTION),
    "id": integer,
    "domain": one_of(*DOMAINS),
    "currency": one_of(*CURRENCIES),
    "amount": integer,
    "status": text,
    "refunded_by": text,
    "customer_note": text,
    "merchant_note": text,
    "deducted_amount": integer,
    "fully_deducted": lambda value: isinstance(value, int),  # int | bool
    "created_at": timestamp,
    "refunded_at": optional(timestamp),
    "transaction_reference": optional(text),
    "customer": optional(lambda value: conforms(value, CUSTOMER)),
    "transaction_amount": optional(integer),
}
DISPUTE = {
    "id": integer,
    "status": one_of(*DISPUTE_STATUSES),
    "domain": one_of(*DOMAINS),
    "transaction": lambda value: conforms(value, TRANSACTION),
    "customer": lambda value: conforms(value, CUSTOMER),
    "attachments": present,  # required, any value
    "history": every(
        lambda item: (
            item["status"] in DISPUTE_STATUSES
            and text(item["by"])
            and timestamp(item["created_at"])
        )
    ),
    "messages": every(
        lambda item: text(item["sender"]) and text(item["body"]) and timestamp(item["created_at"])
    ),
    "created_at": timestamp,
    "updated_at": timestamp,
    "refund_amount": optional(integer),
    "currency": optional(one_of(*CURRENCIES)),
}


def conforms(obj: Any, rules: dict[str, Any]) -> bool:
    return isinstance(obj, dict) and not problems(obj, rules)


def problems(obj: dict[str, Any], rules: dict[str, Any]) -> list[str]:
    """Fields missing or of the wrong type (optional fields may be absent)."""
    return [
        f"{name}: {obj.get(name, 'missing')!r}"
        for name, check in rules.items()
        if not check(obj.get(name, MISSING))
    ]


def test_transactions_parse_in_every_state(api: Client, receiver: Receiver) -> None:
    paid = api.paid(metadata={"votes": 2})
    unpaid = api.paid(status="abandoned")
    reversed_ = api.paid()
    api.post("/refund", json={"transaction": reversed_})
    for reference in (paid, unpaid, reversed_):
        data = api.verify(reference).json()["data"]
        assert problems(data, TRANSACTION) == [], reference
        assert api.get(f"/transaction/{data['id']}").json()["data"] == data
    listed = api.get("/transaction").json()["data"]
    assert len(listed) == 3 and all(problems(item, TRANSACTION) == [] for item in listed)
    api.control(f"transactions/{unpaid}/pay")
    webhooks = receiver.wait_for(1, lambda e: e["event"] == "charge.success")
    assert problems(webhooks[0][2]["data"], TRANSACTION) == []


def test_refunds_parse_as_created_fetched_and_listed(api: Client) -> None:
    reference = api.paid(amount=10000)
    created = api.post("/refund", json={"transaction": reference, "amount": 4000}).json()["data"]
    assert problems(created, REFUND) == []
    fetched = api.get(f"/refund/{created['id']}").json()["data"]
    assert problems(fetched, REFUND) == []
    listed = api.get("/refund", params={"transaction": reference}).json()["data"]
    assert [problems(item, REFUND) for item in listed] == [[]]


def test_disputes_parse_open_and_resolved(api: Client) -> None:
    reference = api.paid()
    opened = api.control("disputes", {"transaction": reference})
    assert problems(opened, DISPUTE) == []
    resolved = api.control(f"disputes/{opened['id']}/resolve", {"outcome": "lost"})
    assert problems(resolved, DISPUTE) == []
