"""What the sandbox knows, as plain records: transactions, their refunds and disputes.

The Store (state.py) keeps and changes them under its lock; shapes.py renders them as Paystack's
JSON. Neither of those is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Transaction:
    id: int
    reference: str
    amount: int
    currency: str
    email: str
    status: str
    created_at: datetime
    access_code: str
    paid_at: datetime | None = None
    callback_url: str | None = None
    metadata: Any = None
    refund_reference: str | None = None  # of a refund event delivered with no refund made
    refunds: list[Refund] = field(default_factory=list)


@dataclass
class Refund:
    id: int
    transaction: Transaction
    amount: int
    created_at: datetime
    outcome: str = "pending"  # where it is going: a REFUND_OUTCOMES, or pending (in flight)
    status: str = "pending"  # what the gateway's refund record says
    counted: bool = False  # processed, and verify has caught up: counts toward "reversed"
    refund_reference: str | None = None  # minted when it reaches an outcome
    refunded_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class Dispute:
    id: int
    transaction: Transaction
    refund_amount: int
    created_at: datetime
    status: str = "awaiting-merchant-feedback"
    resolution: str | None = None
    resolved_at: datetime | None = None
    history: list[tuple[str, datetime]] = field(default_factory=list)
    made: dict[str, dict[str, Any]] = field(default_factory=dict)  # event → data it carried
