"""What each Paystack event type does: one table, one function per type.

Adding an event type is one entry in HANDLERS and one function here. A handler returns the
outcome to record, or None when the reference is not ours (the delivery is then ignored).
Types not in the table are stored and ignored.
"""

from collections.abc import Callable

from tasks.verification import Recorder, reverse_verified, settle_verified
from webhooks.models import Delivery

Handler = Callable[[Delivery, Recorder], str | None]


def charge_success(delivery: Delivery, record: Recorder) -> str | None:
    """Verify the payment and credit its votes once."""
    return settle_verified(delivery.reference, record=record)


def refund_processed(delivery: Delivery, record: Recorder) -> str | None:
    """Verify the refund and take the payment's votes back once."""
    return reverse_verified(delivery.reference, record=record)


HANDLERS: dict[str, Handler] = {
    "charge.success": charge_success,
    "refund.processed": refund_processed,
}
