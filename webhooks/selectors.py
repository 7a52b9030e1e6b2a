"""Shared reads of the delivery log."""

from datetime import datetime

from django.db.models import QuerySet

from webhooks.models import Delivery


def deliveries_matching(
    *,
    status: str,
    event: str | None = None,
    reference: str | None = None,
    received_after: datetime | None = None,
) -> QuerySet[Delivery]:
    """Deliveries with this status, narrowed by the optional filters, oldest first."""
    deliveries = Delivery.objects.filter(status=status)
    if event:
        deliveries = deliveries.filter(event=event)
    if reference:
        deliveries = deliveries.filter(reference=reference)
    if received_after is not None:
        deliveries = deliveries.filter(received_at__gte=received_after)
    return deliveries.order_by("pk")
