import json

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from ledger.models import OperatorAction, Payment
from ledger.operator_log import actions_touching, recorded
from webhooks.models import Delivery
from webhooks.services import ReplayResult, note_replay, replay_deliveries

REPLAY_PERMISSION = "webhooks.change_delivery"


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
        "payment_link",
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
        "pruned_at",
        "operator_actions",
        "pretty_body",
    ]
    actions = ["replay_selected"]

    class Media:
        # A stylesheet, not a style attribute: the Content-Security-Policy refuses inline styles.
        css = {"all": ["webhooks/admin.css"]}

    def has_add_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        # The log is evidence: no field is ever edited here. Replay is its own permission.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        # Append-only, superusers included: a deleted delivery is lost evidence of what
        # Paystack sent. This also removes the bulk "Delete selected" action.
        return False

    def has_replay_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        """Replay changes a delivery's status, so it needs the model's change permission."""
        return request.user.has_perm(REPLAY_PERMISSION)

    def get_urls(self) -> list[URLPattern]:
        replay = path(
            "<path:object_id>/replay/",
            self.admin_site.admin_view(self.replay_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_replay",
        )
        # Before the defaults: their "<path:object_id>/" catch-all would swallow it.
        return [replay, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, object] | None = None,
    ) -> HttpResponse:
        context = {**(extra_context or {}), "can_replay": self.has_replay_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context=context)

    @admin.action(description="Replay selected %(verbose_name_plural)s", permissions=["replay"])
    def replay_selected(
        self, request: HttpRequest, queryset: QuerySet[Delivery]
    ) -> TemplateResponse | None:
        """Ask first; on the confirmed POST replay, then fall back to the list (None)."""
        if request.POST.get("post") != "yes":
            return self._confirm_replay(request, queryset, from_list=True)
        ids = list(queryset.values_list("pk", flat=True))
        self._report(request, self._replay(request, ids))
        return None

    def replay_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The "Replay" button: a confirmation page on GET, the replay on a confirmed POST."""
        delivery = self.get_object(request, unquote(object_id))
        if delivery is None:
            # Django's own "not found" redirect for admin views; private, so not in the stubs.
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined, no-any-return]
        if not self.has_replay_permission(request, delivery):
            raise PermissionDenied
        if request.method != "POST" or request.POST.get("post") != "yes":
            queryset = Delivery.objects.filter(pk=delivery.pk)
            return self._confirm_replay(request, queryset, from_list=False)
        self._report(request, self._replay(request, [delivery.pk]))
        change_url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[delivery.pk]
        )
        return HttpResponseRedirect(change_url)

    def _replay(self, request: HttpRequest, ids: list[int]) -> ReplayResult:
        """Replay, recorded in the operator log with who asked."""
        with recorded(
            action="replay",
            actor=request.user.get_username(),
            via=OperatorAction.Via.ADMIN,
            arguments={"deliveries": ids},
        ) as record:
            result = replay_deliveries(delivery_ids=ids)
            note_replay(record, result)
        return result

    def _confirm_replay(
        self, request: HttpRequest, queryset: QuerySet[Delivery], *, from_list: bool
    ) -> TemplateResponse:
        now = timezone.now()
        deliveries = list(queryset.order_by("pk"))
        for delivery in deliveries:
            # A flag for the confirmation template only, set on the instance it lists.
            delivery.in_progress = (  # type: ignore[attr-defined]
                delivery.status == Delivery.Status.PROCESSING and delivery.stale_after >= now
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Replay deliveries?",
            "opts": self.opts,
            "deliveries": deliveries,
            "from_list": from_list,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/webhooks/delivery/replay_confirmation.html", context
        )

    def _report(self, request: HttpRequest, result: ReplayResult) -> None:
        level = messages.WARNING if result.skipped or result.refused_by_broker else messages.SUCCESS
        self.message_user(request, replay_message(result), level)

    @admin.display(description="age")
    def age(self, delivery: Delivery) -> str:
        return timesince(delivery.received_at, timezone.now())

    @admin.display(description="payment")
    def payment_link(self, delivery: Delivery) -> str:
        """The payment this event concerns, when the reference is one of ours."""
        payment = (
            Payment.objects.filter(reference=delivery.reference).only("pk", "status").first()
            if delivery.reference
            else None
        )
        if payment is None:
            return "-"
        url = reverse("admin:ledger_payment_change", args=[payment.pk])
        timeline = reverse("payment-timeline", args=[payment.reference])
        return format_html(
            "<a href='{}'>{} ({})</a> · <a href='{}'>timeline</a>",
            url,
            payment.reference,
            payment.status,
            timeline,
        )

    @admin.display(description="operator actions")
    def operator_actions(self, delivery: Delivery) -> str:
        """Who replayed this delivery, when, and how it went (the operator log)."""
        actions = actions_touching(delivery_id=delivery.pk)
        if not actions:
            return "-"
        return format_html_join(
            mark_safe("<br>"),
            "<a href='{}'>{} by {} on {} ({})</a>",
            (
                (
                    reverse("admin:ledger_operatoraction_change", args=[action.pk]),
                    action.action,
                    action.actor,
                    action.started_at.strftime("%Y-%m-%d %H:%M"),
                    action.outcome,
                )
                for action in actions
            ),
        )

    @admin.display(description="body (as received, pretty-printed)")
    def pretty_body(self, delivery: Delivery) -> str:
        if delivery.pruned_at is not None:
            when = delivery.pruned_at.strftime("%Y-%m-%d")
            return f"(dropped on {when} by retention; the row and its outcome are kept)"
        try:
            parsed = json.loads(delivery.raw_body)
            text = json.dumps(parsed, indent=2, sort_keys=True, ensure_ascii=False)
        except ValueError:
            text = delivery.raw_body
        return format_html("<pre class='delivery-body'>{}</pre>", text)


def replay_message(result: ReplayResult) -> str:
    """One sentence for the admin: what was replayed, what was harmless, what was left alone."""
    message = f"Replayed {_deliveries(result.replayed)}"
    if result.already_processed:
        count = result.already_processed
        message += f" ({count} already processed: replaying {_it(count)} changes nothing)"
    message += "."
    if result.skipped:
        message += f" Skipped {result.skipped} in progress."
    if result.missing:
        message += f" {_deliveries(result.missing)} no longer found."
    if result.refused_by_broker:
        message += (
            f" The broker refused {result.refused_by_broker}: they wait as received and the"
            " sweeper enqueues them once it is back."
        )
    return message


def _it(count: int) -> str:
    return "it" if count == 1 else "them"


def _deliveries(count: int) -> str:
    return f"{count} delivery" if count == 1 else f"{count} deliveries"
