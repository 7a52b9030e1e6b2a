"""In-memory state of the sandbox: transactions, refunds, disputes, faults, overrides, counters.

Everything sits behind one ``threading.Lock``; each method holds it only for a few dict operations,
so hundreds of verify calls per second from many keep-alive connections do not queue up on it.
Methods that change what the gateway knows return a ``Change``: the answer and the webhooks to
send, built under the lock so they are consistent; the server posts the webhooks afterwards.

How refunds and disputes move (Paystack's support article "Understanding refund statuses" and
its docs, see docs/paystack.md): a refund is ``pending``, then ``processing``, then ends
``processed``, ``failed`` or ``needs-attention`` (a person must give the customer's account).
Several partial refunds may add up to the amount paid. The transaction that verify reports
turns ``reversed`` once processed refunds cover its whole amount (Paystack documents no
partial state; ``Config.reverse_on_partial_refund`` models the reading that any processed
refund reverses it). A lost dispute (chargeback) reverses it too; a won one leaves it paid.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sandbox import shapes
from sandbox.records import Dispute, Refund, Transaction

ENDPOINTS = ("initialize", "verify", "fetch", "list", "refund", "refund_list", "refund_fetch")
# 200_html: a proxy's HTML page with status 200; 200_no_status: JSON 200 without "status".
FAULT_KINDS = ("500", "429", "timeout", "200_html", "200_no_status")
# Fields that /_sandbox/overrides may change in what verify, fetch and list report.
OVERRIDABLE = ("amount", "requested_amount", "currency", "status", "domain")
# Not final, so they can still become success (an abandoned payment may be completed later).
PAYABLE = ("abandoned", "ongoing", "pending", "processing", "queued")
REFUND_STEPS = ("pending", "processing")  # statuses a refund passes through
REFUND_OUTCOMES = ("processed", "failed", "needs-attention")
REFUND_LAGS = ("none", "verify", "all")
FIRST_ID = 4_399_260_516  # > 2**32 (Paystack: 4,099,260,516 > 2**31)
MAX_ID = 2**64 - 1  # Paystack's ids are unsigned 64-bit


def now() -> datetime:
    return datetime.now(UTC)


def transaction_data(tx: Transaction, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``data`` object of verify, fetch, list items and ``charge.success``."""
    out = shapes.transaction(tx)
    if overrides:
        out.update((k, v) for k, v in overrides.items() if k in OVERRIDABLE)
    return out


class Refused(Exception):
    """The gateway refuses the request: an HTTP status and Paystack's message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RefundPlan:
    """How the gateway carries a refund along (see ``POST /_sandbox/refunds``)."""

    outcome: str = "processed"  # a REFUND_OUTCOMES, or "pending": it stays in flight
    steps: tuple[str, ...] = ()  # REFUND_STEPS whose events go out before the outcome's
    lag: str = "none"  # "verify": verify lags the outcome's event; "all": the record lags too
    catch_up_after: float | None = None  # seconds until a lagging gateway catches up; None: asked


@dataclass(frozen=True)
class Change:
    """What a change at the gateway answers, and the webhooks it sends, in order."""

    reference: str  # the payment concerned (webhook delivery settings are per reference)
    data: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    created: dict[str, Any] | None = None  # a new refund as POST /refund answers it


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
    """Global settings, changed at runtime by /_sandbox/config."""

    webhook_url: str
    webhook_times: int = 1
    webhook_delay: float = 0.0
    webhook_retries: int = 3
    webhook_retry_delay: float = 1.0
    reverse_on_partial_refund: bool = False


class Store:
    def __init__(self, config: Config, first_id: int = FIRST_ID) -> None:
        self.lock = threading.Lock()
        self._initial = Config(**vars(config))
        self.config = config
        self.transactions: dict[str, Transaction] = {}
        self.by_access_code: dict[str, str] = {}
        self.by_id: dict[int, str] = {}
        self.refunds: dict[int, Refund] = {}
        self.disputes: dict[int, Dispute] = {}
        self.faults: list[Fault] = []
        self.overrides: dict[str, dict[str, Any]] = {}
        self.counts: Counter[str] = Counter()  # "verify", "faults_served", "webhooks.ok", ...
        self.verify_by_reference: Counter[str] = Counter()
        self.in_flight = 0  # webhook copies not delivered yet (or given up); survives reset
        # Ids and refund references survive /_sandbox/reset on purpose: the app under test keeps its
        # database across sandbox resets and dedupes on them, so they must never repeat.
        self._next_id = first_id
        self._next_refund_id = 3_018_284
        self._next_dispute_id = 358_950
        self._next_refund_reference = 132_013_318_360

    def reset(self) -> None:
        with self.lock:
            self.config = Config(**vars(self._initial))
            self.transactions.clear()
            self.by_access_code.clear()
            self.by_id.clear()
            self.refunds.clear()
            self.disputes.clear()
            self.faults.clear()
            self.overrides.clear()
            self.counts.clear()
            self.verify_by_reference.clear()

    def set_next_id(self, next_id: int) -> int:
        """Number new transactions from ``next_id`` on, e.g. past 2**63 - 1; never backwards."""
        with self.lock:
            if not self._next_id <= next_id <= MAX_ID:
                raise Refused(f"id must be from {self._next_id} (ids never repeat) to {MAX_ID}")
            self._next_id = next_id
            return next_id

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
                if self._next_id > MAX_ID:
                    raise Refused(f"The sandbox has used every id up to {MAX_ID}", 500)
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
        """Move a transaction to ``status`` if it is in ``allowed_from``; its data, or None.

        Paid means paid now: ``paid_at`` is the moment of this call, also for a payment that
        was abandoned long ago and completed late.
        """
        with self.lock:
            tx = self.transactions.get(reference)
            if tx is None or tx.status not in allowed_from:
                return None
            tx.status = status
            if status == "success":
                tx.paid_at = now()
            return transaction_data(tx)

    def charge_event(self, reference: str) -> dict[str, Any] | None:
        """``data`` of a ``charge.success`` webhook: the stored truth (never overrides), paid.

        A delivery asked for before the payment settled (a forged or early event) shows it
        paid now.
        """
        with self.lock:
            tx = self.transactions.get(reference)
            if tx is None:
                return None
            return transaction_data(replace(tx, status="success", paid_at=tx.paid_at or now()))

    def data(self, tx: Transaction) -> dict[str, Any]:
        """The stored truth, which webhooks carry (overrides only change what verify reports)."""
        with self.lock:
            return transaction_data(tx)

    def report(self, key: str | int) -> dict[str, Any] | None:
        """What verify (by reference) or fetch (by id) reports, overrides applied; None: unknown."""
        with self.lock:
            tx = self.transactions.get(key) if isinstance(key, str) else self._find(key)
            return transaction_data(tx, self.overrides.get(tx.reference)) if tx else None

    def listing(self) -> list[dict[str, Any]]:
        """All transactions as verify reports them, newest first."""
        with self.lock:
            txs = sorted(
                self.transactions.values(), key=lambda t: (t.created_at, t.id), reverse=True
            )
            return [transaction_data(t, self.overrides.get(t.reference)) for t in txs]

    def override(self, reference: str, values: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            merged = self.overrides.setdefault(reference, {})
            merged.update(values)
            return dict(merged)

    # -- refunds -------------------------------------------------------------------------------

    def create_refund(self, key: str | int, amount: int | None, plan: RefundPlan) -> Change:
        """A refund of ``amount`` (default: all not refunded yet), carried along ``plan``."""
        with self.lock:
            tx = self._find(key)
            if tx is None:
                raise Refused("Transaction not found")
            if tx.status == "reversed":
                raise Refused("Transaction has been fully reversed")
            if tx.status != "success":
                raise Refused("Transaction has not been paid")
            # A refund holds its amount from the start; only a failed one gives it back.
            left = tx.amount - sum(r.amount for r in tx.refunds if r.outcome != "failed")
            if left <= 0:
                raise Refused("Transaction has been fully reversed")
            if amount is not None and amount > left:
                raise Refused("Refund amount cannot be more than the transaction amount")
            refund = Refund(self._next_refund_id, tx, amount or left, created_at=now())
            self._next_refund_id += 1
            self.refunds[refund.id] = refund
            tx.refunds.append(refund)
            created = shapes.refund_created(refund)
            events = self._advance(refund, plan)
            return Change(tx.reference, shapes.refund_record(refund), events, created)

    def finish_refund(self, refund_id: int, plan: RefundPlan) -> Change:
        """Carry a refund in flight (or one that needs attention) on along ``plan``."""
        with self.lock:
            refund = self._refund(refund_id)
            if refund.outcome not in ("pending", "needs-attention"):
                raise Refused(f"Refund {refund_id} is already {refund.outcome}", 409)
            events = self._advance(refund, plan)
            return Change(refund.transaction.reference, shapes.refund_record(refund), events)

    def catch_up(self, refund_id: int) -> dict[str, Any]:
        """A lagging gateway catches up with a refund's outcome; the refund record."""
        with self.lock:
            refund = self._refund(refund_id)
            if refund.outcome != "pending":
                self._catch_up(refund)
            return shapes.refund_record(refund)

    def refund_record(self, refund_id: int) -> dict[str, Any] | None:
        with self.lock:
            refund = self.refunds.get(refund_id)
            return shapes.refund_record(refund) if refund else None

    def refund_records(self, transaction: str | None) -> list[dict[str, Any]]:
        """Refunds, newest first: of one transaction (reference or id), or all of them."""
        with self.lock:
            if transaction is None:
                refunds = list(self.refunds.values())
            else:
                tx = self._find(transaction)
                refunds = list(tx.refunds) if tx else []
            refunds.sort(key=lambda r: (r.created_at, r.id), reverse=True)
            return [shapes.refund_record(r) for r in refunds]

    def refund_event(
        self, reference: str, refund_id: int | None, status: str
    ) -> dict[str, Any] | None:
        """``data`` of a ``refund.<status>`` webhook, for a delivery the caller asks for.

        About ``refund_id``, else the transaction's latest refund, else a refund never made
        (a forged or early event). A refund reference is minted once per refund, so every copy
        and every later delivery is recognisably the same refund.
        """
        with self.lock:
            tx = self.transactions.get(reference)
            if tx is None:
                return None
            if refund_id is not None:
                refund = self._refund(refund_id)
                if refund.transaction is not tx:
                    raise Refused(f"Refund {refund_id} is not a refund of {reference}", 404)
            elif tx.refunds:
                refund = tx.refunds[-1]
            else:
                tx.refund_reference = tx.refund_reference or self._mint_refund_reference()
                refund = Refund(0, tx, tx.amount, now(), refund_reference=tx.refund_reference)
            if refund.refund_reference is None and status not in REFUND_STEPS:
                refund.refund_reference = self._mint_refund_reference()
            return shapes.refund_event(refund, status)

    def _refund(self, refund_id: int) -> Refund:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise Refused("Refund not found", 404)
        return refund

    def _advance(self, refund: Refund, plan: RefundPlan) -> list[tuple[str, dict[str, Any]]]:
        """Carry ``refund`` along ``plan`` (lock held); the webhooks to send, in order.

        The record and verify move at once, before any webhook goes out, unless the plan makes
        them lag: then they move at ``catch_up`` while the webhooks say it already happened.
        """
        events = [(f"refund.{step}", shapes.refund_event(refund, step)) for step in plan.steps]
        if plan.steps and plan.lag != "all":
            self._record(refund, plan.steps[-1])
        if plan.outcome == "pending":
            return events
        refund.outcome = plan.outcome
        refund.refund_reference = refund.refund_reference or self._mint_refund_reference()
        events.append((f"refund.{plan.outcome}", shapes.refund_event(refund, plan.outcome)))
        if plan.lag == "none":
            self._catch_up(refund)
        elif plan.lag == "verify":
            self._record(refund, plan.outcome)
        return events

    def _record(self, refund: Refund, status: str) -> None:
        """What the refund record says from now on (lock held)."""
        refund.status, refund.updated_at = status, now()
        if status == "processed":
            refund.refunded_at = refund.refunded_at or refund.updated_at

    def _catch_up(self, refund: Refund) -> None:
        """Record and verify show the refund's outcome (lock held)."""
        self._record(refund, refund.outcome)
        if refund.outcome != "processed" or refund.counted:
            return
        refund.counted = True
        tx = refund.transaction
        refunded = sum(r.amount for r in tx.refunds if r.counted)
        if refunded >= tx.amount or self.config.reverse_on_partial_refund:
            tx.status = "reversed"

    def _mint_refund_reference(self) -> str:
        reference, self._next_refund_reference = (
            str(self._next_refund_reference),
            self._next_refund_reference + 1,
        )
        return reference

    # -- disputes (chargebacks) ----------------------------------------------------------------

    def open_dispute(self, key: str | int, refund_amount: int | None) -> Change:
        """The payer's bank disputes a paid transaction: ``charge.dispute.create``."""
        with self.lock:
            tx = self._find(key)
            if tx is None:
                raise Refused("Transaction not found", 404)
            if tx.status != "success":
                raise Refused(f"Transaction is {tx.status}, not success", 409)
            opened = now()
            dispute = Dispute(self._next_dispute_id, tx, refund_amount or tx.amount, opened)
            dispute.history.append(("pending", opened))
            self._next_dispute_id += 1
            self.disputes[dispute.id] = dispute
            return self._made(dispute, "charge.dispute.create")

    def remind_dispute(self, dispute_id: int) -> Change:
        with self.lock:
            dispute = self._unresolved(dispute_id)
            return self._made(dispute, "charge.dispute.remind")

    def resolve_dispute(self, dispute_id: int, *, lost: bool, resolution: str | None) -> Change:
        """Lost: the money goes back and the transaction is ``reversed``. Won: it stays paid."""
        with self.lock:
            dispute = self._unresolved(dispute_id)
            resolved = now()
            dispute.status, dispute.resolved_at = "resolved", resolved
            dispute.resolution = resolution or ("merchant-accepted" if lost else "declined")
            dispute.history.append(("resolved", resolved))
            if lost:
                dispute.transaction.status = "reversed"
            return self._made(dispute, "charge.dispute.resolve")

    def dispute_event(self, dispute_id: int, event: str) -> Change:
        """``event`` again, byte for byte what it carried when it happened."""
        with self.lock:
            dispute = self.disputes.get(dispute_id)
            if dispute is None:
                raise Refused("Dispute not found", 404)
            data = dispute.made.get(event)
            if data is None:
                raise Refused(f"{event} has not happened to dispute {dispute_id}", 409)
            return Change(dispute.transaction.reference, data, [(event, data)])

    def _unresolved(self, dispute_id: int) -> Dispute:
        dispute = self.disputes.get(dispute_id)
        if dispute is None:
            raise Refused("Dispute not found", 404)
        if dispute.status == "resolved":
            raise Refused(f"Dispute {dispute_id} is resolved", 409)
        return dispute

    def _made(self, dispute: Dispute, event: str) -> Change:
        """The gateway makes ``event`` now (lock held): its data is kept to send it again."""
        data = shapes.dispute(dispute)
        dispute.made[event] = data
        return Change(dispute.transaction.reference, data, [(event, data)])

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

    def webhooks_queued(self, copies: int) -> None:
        with self.lock:
            self.in_flight += copies

    def webhook_done(self) -> None:
        with self.lock:
            self.in_flight -= 1

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
                "webhooks": {
                    **{k: c[f"webhooks.{k}"] for k in ("sent", "ok", "failed")},
                    "in_flight": self.in_flight,
                },
                "transactions": len(self.transactions),
                "refunds": len(self.refunds),
                "disputes": len(self.disputes),
            }

    def delivery(self, reference: str | None) -> tuple[int, float]:
        """``(times, delay)`` for a webhook about ``reference``: its override, else global."""
        with self.lock:
            o = self.overrides.get(reference or "", {})
            return (
                o.get("webhook_times", self.config.webhook_times),
                o.get("webhook_delay", self.config.webhook_delay),
            )
