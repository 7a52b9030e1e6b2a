"""What a Paystack event is about, and the identity that makes a repeat delivery a repeat."""

import hashlib
import json
from dataclasses import dataclass
from typing import Any


class NotAnEvent(ValueError):
    """The body is not a Paystack event: the message says what is wrong, for a 400."""


@dataclass(frozen=True)
class ParsedEvent:
    event: str
    data: dict[str, Any]
    text: str  # the body decoded, byte for byte
    reference: str
    gateway_id: str
    dedup_key: str


# Events without an id of their own (refund.pending/processing carry refund_reference null):
# only the body tells two of them apart.
_BODY_IDENTIFIED = frozenset({"refund.pending", "refund.processing"})


def parse_event(body: bytes) -> ParsedEvent:
    try:
        text = body.decode("utf-8")
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise NotAnEvent("body is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise NotAnEvent("body must be a JSON object")
    event, data = document.get("event"), document.get("data")
    if not isinstance(event, str) or not event:
        raise NotAnEvent("'event' must be a non-empty string")
    if not isinstance(data, dict):
        raise NotAnEvent("'data' must be an object")
    if "\\u0000" in text:
        raise NotAnEvent("body contains a NUL character")  # PostgreSQL cannot store it
    reference = _reference_of(event, data)
    gateway_id = _text(data.get("id")) or _text(data.get("refund_reference"))
    discriminator = ""
    if event in _BODY_IDENTIFIED or not (gateway_id or reference):
        discriminator = hashlib.sha256(body).hexdigest()
    identity = "\n".join((event, gateway_id, reference, discriminator))
    return ParsedEvent(
        event=event[:100],
        data=data,
        text=text,
        reference=reference[:255],
        gateway_id=gateway_id[:64],
        dedup_key=hashlib.sha256(identity.encode()).hexdigest(),
    )


def _reference_of(event: str, data: dict[str, Any]) -> str:
    """The reference of the payment the event concerns (PAYSTACK.md §3)."""
    if event.startswith("refund."):
        return _text(data.get("transaction_reference"))
    if event.startswith("charge.dispute."):
        transaction = data.get("transaction")
        return _text(transaction.get("reference")) if isinstance(transaction, dict) else ""
    return _text(data.get("reference"))


def _text(value: object) -> str:
    if value is None or isinstance(value, dict | list | bool):
        return ""
    return str(value)
