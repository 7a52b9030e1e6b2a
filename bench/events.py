"""Signed `charge.success` deliveries, shaped and signed the way the sandbox (and Paystack) does.

Bodies are rendered and signed before any clock starts, so the load client only writes bytes.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from bench.environment import PAYSTACK_SECRET_KEY

WEBHOOK_PATH = "/webhooks/paystack/"
FIRST_GATEWAY_ID = 5_100_000_000  # > 2**32 like real Paystack ids; never collides with sandbox ids


@dataclass(frozen=True)
class PaidPayment:
    """What the bench knows of one payment it created: enough to deliver and check it."""

    reference: str
    contestant_id: int
    votes: int
    amount: int
    currency: str
    email: str


@dataclass(frozen=True)
class SignedDelivery:
    body: bytes
    signature: str


def charge_success(payment: PaidPayment, *, gateway_id: int) -> SignedDelivery:
    """The webhook Paystack sends for a paid charge: compact JSON, raw UTF-8, HMAC-SHA512."""
    paid_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    data = {
        "id": gateway_id,
        "domain": "test",
        "status": "success",
        "reference": payment.reference,
        "amount": payment.amount,
        "requested_amount": payment.amount,
        "currency": payment.currency,
        "paid_at": paid_at,
        "created_at": paid_at,
        "customer": {"email": payment.email},
        "metadata": {"contestant": payment.contestant_id, "votes": payment.votes},
    }
    body = json.dumps(
        {"event": "charge.success", "data": data}, separators=(",", ":"), ensure_ascii=False
    ).encode()
    return SignedDelivery(body=body, signature=sign(body))


def sign(body: bytes) -> str:
    return hmac.new(PAYSTACK_SECRET_KEY.encode(), body, hashlib.sha512).hexdigest()


def http_post(host: str, port: int, path: str, delivery: SignedDelivery) -> bytes:
    """One complete HTTP/1.1 keep-alive request, ready to write to a socket."""
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        "User-Agent: tally-bench\r\n"
        f"x-paystack-signature: {delivery.signature}\r\n"
        f"Content-Length: {len(delivery.body)}\r\n"
        "\r\n"
    )
    return head.encode() + delivery.body


def http_get(host: str, port: int, path: str) -> bytes:
    """One complete HTTP/1.1 keep-alive GET, ready to write to a socket."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: tally-bench\r\n\r\n"
    ).encode()
