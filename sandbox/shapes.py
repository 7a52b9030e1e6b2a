"""The JSON objects the sandbox answers and posts, shaped like Paystack's samples.

Sources: the response and event samples of Paystack's docs (PaystackOSS/doc-code-snippets:
``dist/api/transactions/*``, ``dist/api/refunds/*``, ``dist/doc/payments/refunds/events.js``,
``dist/doc/payments/webhooks/events.js``) and its OpenAPI (PaystackOSS/openapi
``dist/paystack.yaml``). Objects carry every field a typed client such as pypaystack2 requires,
with the documented types (its models: ``Transaction``, ``Customer``, ``Refund``, ``Dispute``),
and Paystack's doubled spellings (``paid_at``/``paidAt``, ``created_at``/``createdAt``).

Pure functions of the records in ``sandbox.state``, which change under the store's lock: call
them with that lock held.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.records import Dispute, Refund, Transaction

INTEGRATION = 412829  # the merchant's integration id, as in Paystack's samples
MERCHANT = "merchant@example.com"  # who "initiated" refunds on the dashboard
# What data.gateway_response says for each data.status (Paystack's wording where it has one).
GATEWAY_RESPONSES = {
    "success": "Successful",
    "reversed": "Successful",  # the charge succeeded; the money went back later
    "failed": "Declined",
    "abandoned": "The transaction was not completed",
}
# Refund statuses whose event carries the refund's amount as a string, not a number
# (refund.pending/processing/processed samples use strings; failed/needs-attention numbers).
STRING_AMOUNT = ("pending", "processing", "processed")


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


def _notes(reference: str) -> dict[str, str]:
    return {
        "customer_note": f"Refund for transaction {reference}",
        "merchant_note": f"Refund for transaction {reference} by {MERCHANT}",
    }


def refund_record(refund: Refund) -> dict[str, Any]:
    """A refund as ``GET /refund/:id`` and ``GET /refund`` show it (``transaction`` = its id)."""
    tx = refund.transaction
    created_at, updated_at = iso(refund.created_at), iso(refund.updated_at or refund.created_at)
    return {
        "id": refund.id,
        "integration": INTEGRATION,
        "domain": "test",
        "transaction": tx.id,
        "transaction_reference": tx.reference,
        "dispute": None,
        "settlement": None,
        "amount": refund.amount,
        "deducted_amount": refund.amount,
        "fully_deducted": True,
        "currency": tx.currency,
        "channel": "card",
        "status": refund.status,
        "refunded_by": MERCHANT,
        "refunded_at": iso_or_none(refund.refunded_at),
        "expected_at": iso(refund.created_at + timedelta(days=7)),
        **_notes(tx.reference),
        "bank_reference": None,
        "reason": None,
        "customer": customer(tx.email),
        "refund_type": "full" if refund.amount == tx.amount else "partial",
        "transaction_amount": tx.amount,
        "initiated_by": MERCHANT,
        "refund_channel": "card",
        "session_id": None,
        "collect_account_number": False,
        "created_at": created_at,
        "createdAt": created_at,
        "updated_at": updated_at,
        "updatedAt": updated_at,
    }


def refund_created(refund: Refund) -> dict[str, Any]:
    """``POST /refund``'s ``data``: the record as queued, with the whole transaction embedded."""
    return {
        **refund_record(refund),
        "status": "pending",
        "refunded_at": None,
        "transaction": transaction(refund.transaction),
    }


def refund_event(refund: Refund, status: str) -> dict[str, Any]:
    """``data`` of a ``refund.<status>`` webhook.

    No payment id, reference, paid_at or metadata: only ``transaction_reference``. The refund
    reference is null while pending/processing; the amount is a string in pending, processing
    and processed events and a number in failed and needs-attention ones; only needs-attention
    carries an ``id`` (the refund's, as a string) and the notes.
    """
    tx = refund.transaction
    in_flight = status in ("pending", "processing")
    data: dict[str, Any] = {
        "status": status,
        "transaction_reference": tx.reference,
        "refund_reference": None if in_flight else refund.refund_reference,
        "amount": str(refund.amount) if status in STRING_AMOUNT else refund.amount,
        "currency": tx.currency,
        "processor": "sandbox",
        "customer": {"first_name": None, "last_name": None, "email": tx.email},
        "integration": INTEGRATION,
        "domain": "test",
    }
    if status == "needs-attention":
        data.update(id=str(refund.id), **_notes(tx.reference))
    return data


def dispute(item: Dispute) -> dict[str, Any]:
    """``data`` of a ``charge.dispute.*`` webhook, the disputed transaction as it stands now.

    The payment reference is only in ``data.transaction.reference``: the top-level
    ``transaction_reference`` is null in Paystack's samples.
    """
    tx = item.transaction
    created_at = iso(item.created_at)
    updated_at = iso(item.history[-1][1]) if item.history else created_at
    return {
        "id": item.id,
        "refund_amount": item.refund_amount,
        "currency": tx.currency,
        "status": item.status,
        "resolution": item.resolution,
        "domain": "test",
        "transaction": transaction(tx),
        "transaction_reference": None,
        "category": "chargeback",
        "customer": customer(tx.email),
        "bin": "408408",
        "last4": "4081",
        "dueAt": iso(item.created_at + timedelta(hours=16)),  # Paystack's 16-hour window
        "resolvedAt": iso_or_none(item.resolved_at),
        "evidence": None,
        "attachments": None,
        "note": None,
        "history": [
            {"status": status, "by": tx.email, "createdAt": iso(at), "created_at": iso(at)}
            for status, at in item.history
        ],
        "messages": [
            {
                "sender": tx.email,
                "body": "Customer complained about debit without value",
                "createdAt": created_at,
                "created_at": created_at,
            }
        ],
        "created_at": created_at,
        "updated_at": updated_at,
    }
