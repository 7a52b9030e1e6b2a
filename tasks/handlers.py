"""What each Paystack event type does: one table, one function per type.

Adding an event type is one entry in HANDLERS and one function here. A handler returns the
outcome to record, or None when the reference is not ours (the delivery is then ignored),
and calls `record(outcome)` inside the transaction that applies it. Types not in the table
are stored and ignored. docs/paystack.md §3 lists the events and what tally does with each.
"""

from collections.abc import Callable

from django.db import transaction

from ledger import services
from tasks.verification import (
    Recorder,
    confirm_reversal,
    resolve_dispute_verified,
    settle_verified,
    status_of,
)
from webhooks.events import dispute_notice, refund_notice
from webhooks.models import Delivery

Handler = Callable[[Delivery, Recorder], str | None]


def charge_success(delivery: Delivery, record: Recorder) -> str | None:
    """Verify the payment and credit its votes once (also a payment we had closed as failed)."""
    return settle_verified(delivery.reference, record=record)


def refund_noted(delivery: Delivery, record: Recorder) -> str | None:
    """refund.pending / .processing / .failed / .needs-attention: record it on the payment at
    once. A recorded refund stops any credit; failed clears it; needs-attention asks a person."""
    if status_of(delivery.reference) is None:
        return None
    notice = refund_notice(delivery.event, Delivery.objects.data_of(delivery.pk))
    with transaction.atomic():
        refund = services.record_refund(reference=delivery.reference, notice=notice)
        outcome = f"refund_{refund.status}"
        record(outcome)
    return outcome


def refund_processed(delivery: Delivery, record: Recorder) -> str | None:
    """Record the refund, then take the votes back once the gateway confirms it (until then,
    retried with backoff, then left to reconciliation)."""
    if status_of(delivery.reference) is None:
        return None
    notice = refund_notice(delivery.event, Delivery.objects.data_of(delivery.pk))
    services.record_refund(reference=delivery.reference, notice=notice)
    return confirm_reversal(delivery.reference, reason="refunded", record=record)


def dispute_opened(delivery: Delivery, record: Recorder) -> str | None:
    """charge.dispute.create / .remind: open the dispute; the votes stay, shown as disputed."""
    if status_of(delivery.reference) is None:
        return None
    notice = dispute_notice(Delivery.objects.data_of(delivery.pk))
    with transaction.atomic():
        dispute = services.open_dispute(
            reference=delivery.reference,
            dispute_id=notice.dispute_id,
            reminded=delivery.event.endswith(".remind"),
        )
        outcome = f"dispute_{dispute.status}"
        record(outcome)
    return outcome


def dispute_resolved(delivery: Delivery, record: Recorder) -> str | None:
    """charge.dispute.resolve: verify; reversed → the votes go back once, else they stand."""
    notice = dispute_notice(Delivery.objects.data_of(delivery.pk))
    return resolve_dispute_verified(
        delivery.reference,
        dispute_id=notice.dispute_id,
        resolution=notice.resolution,
        record=record,
    )


HANDLERS: dict[str, Handler] = {
    "charge.success": charge_success,
    "refund.pending": refund_noted,
    "refund.processing": refund_noted,
    "refund.failed": refund_noted,
    "refund.needs-attention": refund_noted,
    "refund.processed": refund_processed,
    "charge.dispute.create": dispute_opened,
    "charge.dispute.remind": dispute_opened,
    "charge.dispute.resolve": dispute_resolved,
}
