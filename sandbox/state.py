"""In-memory state of the sandbox: transactions, faults, overrides, counters and webhook config.

Everything sits behind one ``threading.Lock``; each method holds it only for a few dict operations,
so hundreds of verify calls per second from many keep-alive connections do not queue up on it.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sandbox import shapes

ENDPOINTS = ("initialize", "verify", "list", "refund")
FAULT_KINDS = ("500", "429", "timeout")
# Fields that /_sandbox/overrides may change in what verify and list report.
OVERRIDABLE = ("amount", "requested_amount", "currency", "status", "domain")


def now() -> datetime:
    return datetime.now(UTC)


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
    refund_reference: str | None = None
    refund_amount: int | None = None

    def data(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``data`` object of verify, list items and the ``charge.success`` webhook."""
        out = shapes.transaction(self)
        if overrides:
            out.update((k, v) for k, v in overrides.items() if k in OVERRIDABLE)
        return out


@dataclass
class Fault:
    endpoint: str  # one of ENDPOINTS or "any"
    reference: str | None  # None = every call of the endpoint
    fault: str  # one of FAULT_KINDS
    count: int
    retry_after: int = 1
    delay: float = 5.0

    def matches(self, endpoint: str, reference: str | None) -> bool:
        return self.endpoint in ("any", endpoint) and self.reference in (None, reference)


@dataclass
class Config:
    """Global webhook delivery settings (changed at runtime by /_sandbox/config)."""

    webhook_url: str
    webhook_times: int = 1
    webhook_delay: float = 0.0
    webhook_retries: int = 3
    webhook_retry_delay: float = 1.0


class Store:
    def __init__(self, config: Config) -> None:
        self.lock = threading.Lock()
        self._initial = Config(**vars(config))
        self.config = config
        self.transactions: dict[str, Transaction] = {}
        self.by_access_code: dict[str, str] = {}
        self.by_id: dict[int, str] = {}
        self.faults: list[Fault] = []
        self.overrides: dict[str, dict[str, Any]] = {}
        self.counts: Counter[str] = Counter()  # "verify", "faults_served", "webhooks.ok", ...
        self.verify_by_reference: Counter[str] = Counter()
        # Ids and refund references survive /_sandbox/reset on purpose: the app under test keeps its
        # database across sandbox resets and dedupes on them, so they must never repeat.
        self._next_id = 4_399_260_516  # > 2**32 (Paystack: 4,099,260,516 > 2**31)
        self._next_refund = 132_013_318_360

    def reset(self) -> None:
        with self.lock:
            self.config = Config(**vars(self._initial))
            self.transactions.clear()
            self.by_access_code.clear()
            self.by_id.clear()
            self.faults.clear()
            self.overrides.clear()
            self.counts.clear()
            self.verify_by_reference.clear()

    # -- transactions --------------------------------------------------------------------------

    def put(self, reference: str | None, *, replace: bool, **fields: Any) -> Transaction | None:
        """Store a transaction; None if the reference exists and ``replace`` is False."""
        created_at = fields.pop("created_at", None) or now()
        with self.lock:
            if reference is None:
                reference = secrets.token_hex(8)
            old = self.transactions.get(reference)
            if old is not None and not replace:
                return None
            if old is None:
                tx_id, self._next_id = self._next_id, self._next_id + 1
                access_code = secrets.token_hex(8)
            else:  # a replacement is the same payment: keep id and access code
                tx_id, access_code = old.id, old.access_code
            tx = Transaction(
                tx_id, reference, created_at=created_at, access_code=access_code, **fields
            )
            self.transactions[reference] = tx
            self.by_access_code[access_code] = reference
            self.by_id[tx_id] = reference
            return tx

    def get(self, reference: str) -> Transaction | None:
        with self.lock:
            return self.transactions.get(reference)

    def find(self, key: str | int) -> Transaction | None:
        with self.lock:
            return self._find(key)

    def _find(self, key: str | int) -> Transaction | None:
        """By reference, then by numeric id (refunds accept either). The caller holds the lock."""
        tx = self.transactions.get(str(key))
        if tx is None and str(key).isdigit():
            tx = self.transactions.get(self.by_id.get(int(key), ""))
        return tx

    def by_code(self, access_code: str) -> Transaction | None:
        with self.lock:
            return self.transactions.get(self.by_access_code.get(access_code, ""))

    def settle(
        self, reference: str, status: str, allowed_from: tuple[str, ...]
    ) -> dict[str, Any] | None:
        """Move a transaction to ``status`` if it is in ``allowed_from``; its data, or None."""
        with self.lock:
            tx = self.transactions.get(reference)
            if tx is None or tx.status not in allowed_from:
                return None
            tx.status = status
            if status == "success":
                tx.paid_at = now()
            return tx.data()

    def refund(
        self, key: str | int, amount: int | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Reverse a paid transaction: ``(its data, None)`` or ``(None, Paystack's message)``."""
        with self.lock:
            tx = self._find(key)
            if tx is None:
                return None, "Transaction not found"
            if tx.status == "reversed":
                return None, "Transaction has been fully reversed"
            if tx.status != "success":
                return None, "Transaction has not been paid"
            if amount is not None and amount > tx.amount:
                return None, "Refund amount cannot be more than the transaction amount"
            tx.status = "reversed"
            tx.refund_amount = amount or tx.amount
            return tx.data(), None

    def refund_event(self, reference: str) -> dict[str, Any] | None:
        """``data`` of a ``refund.processed`` webhook.

        Note the amount is a string, and there is no payment id, reference, paid_at or metadata.
        The refund reference is minted once per transaction, so every copy and every later
        delivery is recognisably the same refund.
        """
        with self.lock:
            tx = self.transactions.get(reference)
            if tx is None:
                return None
            if tx.refund_reference is None:
                tx.refund_reference = str(self._next_refund)
                self._next_refund += 1
            return {
                "status": "processed",
                "transaction_reference": tx.reference,
                "refund_reference": tx.refund_reference,
                "amount": str(tx.refund_amount or tx.amount),
                "currency": tx.currency,
                "domain": "test",
                "customer": {"email": tx.email},
            }

    def charge_event(self, reference: str) -> dict[str, Any] | None:
        """``data`` of a ``charge.success`` webhook: the stored truth (never overrides), paid.

        A delivery asked for before the payment settled (a forged or early event) shows it
        paid now.
        """
        with self.lock:
            tx = self.transactions.get(reference)
            if tx is None:
                return None
            return replace(tx, status="success", paid_at=tx.paid_at or now()).data()

    def data(self, tx: Transaction) -> dict[str, Any]:
        """The stored truth, which webhooks carry (overrides only change what verify reports)."""
        with self.lock:
            return tx.data()

    def report(self, reference: str) -> dict[str, Any] | None:
        """What verify reports for ``reference``: overrides applied; None if unknown."""
        with self.lock:
            tx = self.transactions.get(reference)
            return tx.data(self.overrides.get(reference)) if tx else None

    def listing(self) -> list[dict[str, Any]]:
        """All transactions as verify reports them, newest first."""
        with self.lock:
            txs = sorted(
                self.transactions.values(), key=lambda t: (t.created_at, t.id), reverse=True
            )
            return [t.data(self.overrides.get(t.reference)) for t in txs]

    def override(self, reference: str, values: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            merged = self.overrides.setdefault(reference, {})
            merged.update(values)
            return dict(merged)

    # -- faults and counters -------------------------------------------------------------------

    def edit_faults(self, add: Fault | None = None, clear: bool = False) -> list[dict[str, Any]]:
        """Add a fault or clear them all; the pending faults."""
        with self.lock:
            if clear:
                self.faults.clear()
            if add:
                self.faults.append(add)
            return [vars(f).copy() for f in self.faults]

    def api_call(self, endpoint: str, reference: str | None) -> Fault | None:
        """Count one API call and consume the first fault that applies to it, if any."""
        with self.lock:
            self.counts[endpoint] += 1
            if endpoint == "verify" and reference:
                self.verify_by_reference[reference] += 1
            for i, fault in enumerate(self.faults):
                if fault.matches(endpoint, reference):
                    fault.count -= 1
                    if fault.count <= 0:
                        del self.faults[i]
                    self.counts["faults_served"] += 1
                    return fault
            return None

    def count_webhook(self, ok: bool) -> None:
        with self.lock:
            self.counts["webhooks.sent"] += 1
            self.counts["webhooks.ok" if ok else "webhooks.failed"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            c = self.counts
            return {
                "calls": {name: c[name] for name in ENDPOINTS},
                "verify_by_reference": dict(self.verify_by_reference),
                "faults_served": c["faults_served"],
                "webhooks": {k: c[f"webhooks.{k}"] for k in ("sent", "ok", "failed")},
                "transactions": len(self.transactions),
            }

    def delivery(self, reference: str | None) -> tuple[int, float]:
        """``(times, delay)`` for a webhook about ``reference``: its override, else global."""
        with self.lock:
            o = self.overrides.get(reference or "", {})
            return (
                o.get("webhook_times", self.config.webhook_times),
                o.get("webhook_delay", self.config.webhook_delay),
            )
