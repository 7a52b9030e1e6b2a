"""What a Paystack event is about, and the identity that makes a repeat delivery a repeat."""

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from paystack.types import DisputeNotice, RefundNotice


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
        document = json.loads(text, parse_float=_finite_float, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NotAnEvent("body is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise NotAnEvent("body must be a JSON object")
    event, data = document.get("event"), document.get("data")
    if not isinstance(event, str) or not event:
        raise NotAnEvent("'event' must be a non-empty string")
    if not isinstance(data, dict):
        raise NotAnEvent("'data' must be an object")
    _check_storable(document)
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


def _finite_float(text: str) -> float:
    """A JSON number as a float, refusing one too large for a float (`1e999999`).

    Python reads it as inf, which jsonb cannot store: left to the INSERT it failed as a
    database error, a 503 that Paystack would retry for three days and alerts would read
    as an outage.
    """
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _refuse_constant(name: str) -> None:
    """NaN and Infinity are not JSON; Python accepts them, PostgreSQL's jsonb does not."""
    raise ValueError(f"{name} is not JSON")


def _check_storable(document: dict[str, Any]) -> None:
    """Refuse strings PostgreSQL cannot store (a 400 now, not a 503 on every retry).

    jsonb rejects a NUL character and a lone UTF-16 surrogate (an unpaired \\ud800 escape)
    that Python's json module accepts; left to the INSERT, either would fail as a database
    error and Paystack would retry the delivery for three days.
    """
    pending: list[object] = [document]
    while pending:  # iterative: nesting depth is the sender's choice
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            if "\x00" in value:
                raise NotAnEvent("body contains a NUL character")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise NotAnEvent("body contains an unpaired UTF-16 surrogate escape") from None


def _reference_of(event: str, data: dict[str, Any]) -> str:
    """The reference of the payment the event concerns (docs/paystack.md §3)."""
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


def refund_notice(event: str, data: dict[str, Any]) -> RefundNotice:
    """A refund event's facts: the stage is the event name's (refund.processed → processed)."""
    return RefundNotice(
        status=event.removeprefix("refund."),
        refund_reference=_text(data.get("refund_reference"))[:64],
        amount=_minor_units(data.get("amount")),
        currency=_text(data.get("currency"))[:3],
    )


def dispute_notice(data: dict[str, Any]) -> DisputeNotice:
    """A dispute event's facts; its id is `data.id` (a number or a string)."""
    return DisputeNotice(
        dispute_id=_text(data.get("id"))[:64], resolution=_text(data.get("resolution"))[:64]
    )


def _minor_units(value: object) -> int | None:
    """An amount sent as an integer or an all-digit string (docs/paystack.md §7); else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
