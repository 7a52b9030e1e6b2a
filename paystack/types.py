"""What the gateway answers, as plain values (docs/paystack.md §4, §5, §7)."""

import re
from dataclasses import dataclass
from datetime import datetime

# Paystack's reference alphabet: letters, digits, '-', '.', '='. Ours are at most 64 long;
# 100 leaves room for a gateway-made reference while refusing junk before any query.
_REFERENCE = re.compile(r"[A-Za-z0-9.=-]{1,100}")


def is_reference(text: str) -> bool:
    """True when `text` could be a Paystack reference (and so could be one of ours)."""
    return _REFERENCE.fullmatch(text) is not None


@dataclass(frozen=True)
class Verification:
    """What the gateway's verify API said about one reference, fetched before any lock."""

    reference: str
    status: str  # Paystack's data.status: success, failed, abandoned, ongoing, reversed, ...
    amount: int
    currency: str
    gateway_id: int | None = None  # unsigned 64-bit: may exceed a signed BIGINT
    paid_at: datetime | None = None


@dataclass(frozen=True)
class Initialization:
    """A checkout opened at the gateway: where to send the payer."""

    authorization_url: str
    access_code: str
    reference: str


@dataclass(frozen=True)
class RefundNotice:
    """What a refund webhook said (docs/paystack.md §3). Untrusted: recorded, never a verdict.

    `refund_reference` is empty in refund.pending and refund.processing; `amount` is in minor
    units (the event may send it as a string).
    """

    status: str  # pending, processing, processed, failed or needs-attention
    refund_reference: str = ""
    amount: int | None = None
    currency: str = ""


@dataclass(frozen=True)
class DisputeNotice:
    """What a charge.dispute.* webhook said: which dispute, and how it was resolved."""

    dispute_id: str
    resolution: str = ""  # on .resolve, the gateway's word, e.g. merchant-accepted, declined
