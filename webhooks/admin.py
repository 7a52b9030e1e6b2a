import json

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from webhooks.models import Delivery


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "event",
        "reference",
        "status",
        "outcome",
        "delivery_count",
        "attempts",
        "age",
        "received_at",
    ]
    list_filter = ["status", "event", "received_at"]
    search_fields = ["=reference", "=gateway_id"]
    date_hierarchy = "received_at"
    ordering = ["-received_at"]
    exclude = ["raw_body", "payload", "dedup_key"]
    readonly_fields = [
        "event",
        "reference",
        "gateway_id",
        "status",
        "outcome",
        "last_error",
        "attempts",
        "delivery_count",
        "source_ip",
        "received_at",
        "last_delivered_at",
        "processed_at",
        "stale_after",
        "pretty_body",
    ]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="age")
    def age(self, delivery: Delivery) -> str:
        return timesince(delivery.received_at, timezone.now())

    @admin.display(description="body (as received, pretty-printed)")
    def pretty_body(self, delivery: Delivery) -> str:
        try:
            text = json.dumps(json.loads(delivery.raw_body), indent=2, sort_keys=True)
        except ValueError:
            text = delivery.raw_body
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", text)
