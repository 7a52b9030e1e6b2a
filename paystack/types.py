"""What the gateway answers, as plain values (docs/paystack.md §4-§7)."""

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
    """What the gateway said about one transaction (verify, fetch by id, or a list item),
    fetched before any lock."""

    reference: str
    status: str  # Paystack's data.status: success, failed, abandoned, ongoing, reversed, ...
    amount: int
    currency: str
    gateway_id: int | None = None  # unsigned 64-bit: may exceed a signed BIGINT
    paid_at: datetime | None = None
    created_at: datetime | None = None  # what the list's from/to filter on


@dataclass(frozen=True)
class TransactionPage:
    """One page of the gateway's transaction list, as `PaystackClient.transaction_pages` reads it.

    `transactions` holds only those not on an earlier page of the same listing (pages shift
    as payments arrive). `total` and `page_count` are the gateway's own figures at this page,
    when it gives them (offset paging); None with cursors.
    """

    number: int  # 1 for the first page fetched, then 2, 3, ...
    transactions: tuple[Verification, ...]
    total: int | None = None
    page_count: int | None = None


@dataclass(frozen=True)
class RefundRecord:
    """The gateway's own record of one refund (GET /refund, GET /refund/:id).

    `status` is pending, processing, processed, failed or needs-attention; only `processed`
    means the money went back. The record may say so before verify says `reversed`; after a
    partial refund verify may never say it (Paystack documents no partial state).
    """

    id: int
    transaction_id: int | None
    transaction_reference: str | None
    amount: int  # minor units
    currency: str
    status: str
    refunded_at: datetime | None = None


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
