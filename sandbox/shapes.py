"""The JSON objects the sandbox answers and posts, shaped like Paystack's samples.

Sources: the response samples of Paystack's docs (PaystackOSS/doc-code-snippets:
``dist/api/transactions/*``) and its OpenAPI (PaystackOSS/openapi ``dist/paystack.yaml``).
Objects carry every field a typed client such as pypaystack2 requires, with the documented
types (its models: ``Transaction``, ``Customer``), and Paystack's doubled spellings
(``paid_at``/``paidAt``, ``created_at``/``createdAt``).

Pure functions of the records in ``sandbox.state``, which change under the store's lock: call
them with that lock held.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.state import Transaction

# What data.gateway_response says for each data.status (Paystack's wording where it has one).
GATEWAY_RESPONSES = {
    "success": "Successful",
    "reversed": "Successful",  # the charge succeeded; the money went back later
    "failed": "Declined",
    "abandoned": "The transaction was not completed",
}


def iso(moment: datetime) -> str:
    """Paystack's timestamp format: UTC, milliseconds, ``Z`` (``2025-03-14T18:02:11.000Z``)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_or_none(moment: datetime | None) -> str | None:
    return iso(moment) if moment else None


@lru_cache(maxsize=4096)
def _customer_ids(email: str) -> tuple[int, str]:
    """A stable customer id and code per email, as Paystack keeps one customer per email."""
    digest = hashlib.sha256(email.lower().encode()).hexdigest()
    return int(digest[:8], 16), f"CUS_{digest[:15]}"


def customer(email: str) -> dict[str, Any]:
    customer_id, code = _customer_ids(email)
    return {
        "id": customer_id,
        "first_name": None,
        "last_name": None,
        "email": email,
        "customer_code": code,
        "phone": None,
        "metadata": None,
        "risk_action": "default",
        "international_format_phone": None,
    }


def _log(tx: Transaction, paid_at: datetime) -> dict[str, Any]:
    spent = max(0, int((paid_at - tx.created_at).total_seconds()))
    return {
        "start_time": int(tx.created_at.timestamp()),
        "time_spent": spent,
        "attempts": 1,
        "errors": 0,
        "success": True,
        "mobile": False,
        "input": [],
        "history": [
            {"type": "action", "message": "Attempted to pay with card", "time": 0},
            {"type": "success", "message": "Successfully paid with card", "time": spent},
        ],
    }


def _authorization(tx: Transaction) -> dict[str, Any]:
    return {
        "authorization_code": f"AUTH_{tx.id:x}",
        "bin": "408408",
        "last4": "4081",
        "exp_month": "12",
        "exp_year": "2030",
        "channel": "card",
        "card_type": "visa ",  # sic: Paystack's sample has the trailing space
        "bank": "TEST BANK",
        "country_code": "NG",
        "brand": "visa",
        "reusable": True,
        "signature": f"SIG_{tx.id:x}",
        "account_name": None,
    }


def transaction(tx: Transaction) -> dict[str, Any]:
    """The ``data`` of verify, fetch, list items, ``charge.success`` and a dispute's transaction."""
    paid_at, created_at = iso_or_none(tx.paid_at), iso(tx.created_at)
    return {
        "id": tx.id,
        "domain": "test",
        "status": tx.status,
        "reference": tx.reference,
        "receipt_number": None,
        "amount": tx.amount,
        "message": None,
        "gateway_response": GATEWAY_RESPONSES.get(tx.status, "Pending"),
        "paid_at": paid_at,
        "created_at": created_at,
        "channel": "card",
        "currency": tx.currency,
        "ip_address": "127.0.0.1",
        "metadata": tx.metadata,
        "log": _log(tx, tx.paid_at) if tx.paid_at else None,
        "fees": tx.amount * 15 // 1000 if tx.paid_at else None,  # 1.5%, Paystack's card rate
        "fees_split": None,
        "authorization": _authorization(tx) if tx.paid_at else {},
        "customer": customer(tx.email),
        "plan": None,
        "split": {},
        "subaccount": {},
        "order_id": None,
        "paidAt": paid_at,
        "createdAt": created_at,
        "requested_amount": tx.amount,
        "pos_transaction_data": None,
        "source": {
            "type": "api",
            "source": "merchant_api",
            "identifier": None,
            "entry_point": "transaction_initialize",
        },
        "fees_breakdown": None,
        "connect": None,
        "transaction_date": created_at,
        "plan_object": {},
    }
