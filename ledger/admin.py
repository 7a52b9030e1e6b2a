from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, Model, OuterRef, Q, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from ledger.models import (
    Certification,
    CertifiedTotal,
    Contest,
    Contestant,
    ContestantQuerySet,
    ContestantVotes,
    Dispute,
    LedgerEntry,
    OperatorAction,
    Payment,
    PaymentTransition,
    Refund,
)
from ledger.operator_log import recorded
from ledger.services import CannotResolve, Decision, resolve_attention

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

# Resolving a payment changes its status, so it needs the model's change permission, which
# the admin otherwise grants no form for: only ledger.services writes payments.
RESOLVE_PERMISSION = "ledger.change_payment"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only ledger.services may write."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ContestantTotals:
    """Admin pages show each contestant's total: the sum of its vote shards."""

    def get_queryset(
        self, request: HttpRequest
    ) -> "QuerySet[WithAnnotations[Contestant, ContestantVotes]]":
        # A mixin: the ModelAdmin or inline it is mixed into has get_queryset.
        contestants: ContestantQuerySet = super().get_queryset(request)  # type: ignore[misc]
        return contestants.with_votes()

    @admin.display(description="votes")
    def total_votes(self, contestant: "WithAnnotations[Contestant, ContestantVotes]") -> int:
        return contestant.votes


class ContestantInline(ContestantTotals, admin.TabularInline):
    model = Contestant
    fields = ["name", "slug", "total_votes"]
    readonly_fields = ["total_votes"]
    extra = 0


class CertifiedContestantInline(ContestantInline):
    """A certified contest's contestants: its published result names them, so they stay."""

    readonly_fields = ["name", "slug", "total_votes"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ContestStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(status.value, status.label) for status in Contest.Status]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        certified = Exists(Certification.objects.filter(contest=OuterRef("pk")))
        uncertified = {
            Contest.Status.UPCOMING.value: Q(opens_at__gt=Now()),
            Contest.Status.OPEN.value: Q(opens_at__lte=Now(), closes_at__gt=Now()),
            Contest.Status.CLOSED.value: Q(closes_at__lte=Now()),
        }
        value = self.value()
        if value == Contest.Status.CERTIFIED:
            return queryset.filter(certified)
        if value in uncertified:
            return queryset.filter(uncertified[value]).exclude(certified)
        return queryset


class CertificationInline(admin.TabularInline):
    """A contest's certification and amendments: written by ledger.services only."""

    model = Certification
    fields = ["number", "certified_at", "entries", "root", "reason", "actor"]
    readonly_fields = fields  # type: ignore[assignment]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Contest)
class ContestAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "status",
        "price_per_vote",
        "currency",
        "opens_at",
        "closes_at",
        "results",
    ]
    list_filter = [ContestStatusFilter]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ContestantInline]

    def get_inlines(self, request: HttpRequest, obj: Contest | None) -> list[type[Any]]:
        # Once certified: the contestants as published, and the certifications, read-only.
        if obj is not None and obj.certifications.exists():
            return [CertifiedContestantInline, CertificationInline]
        return [ContestantInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Contest]:
        contests: QuerySet[Contest] = super().get_queryset(request)
        return contests.annotate(
            is_certified=Exists(Certification.objects.filter(contest=OuterRef("pk")))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Contest | None = None) -> list[str]:
        # A certified result is about this window, price and address: changing them now
        # would make the published result describe another contest.
        if obj is not None and obj.certifications.exists():
            return ["slug", "price_per_vote", "currency", "opens_at", "closes_at"]
        return []

    def get_prepopulated_fields(
        self, request: HttpRequest, obj: Contest | None = None
    ) -> dict[str, Sequence[str]]:
        if "slug" in self.get_readonly_fields(request, obj):
            return {}
        return super().get_prepopulated_fields(request, obj)

    @admin.display(description="status")
    def status(self, contest: Contest) -> str:
        certified = bool(getattr(contest, "is_certified", False))
        return contest.status_at(timezone.now(), certified=certified).value

    @admin.display(description="results")
    def results(self, contest: Contest) -> str:
        if not getattr(contest, "is_certified", False):
            return "-"
        return format_html(
            '<a href="{}">certified result</a>', reverse("voting:results", args=[contest.slug])
        )


@admin.register(Contestant)
class ContestantAdmin(ContestantTotals, admin.ModelAdmin):
    list_display = ["name", "contest", "total_votes"]
    list_filter = ["contest"]
    search_fields = ["name", "slug"]
    readonly_fields = ["total_votes"]


class LedgerEntryInline(admin.TabularInline):
    # The inlines below show other models with the same read-only settings.
    model: type[Model] = LedgerEntry
    fields = ["kind", "votes", "contestant", "created_at"]
    # Plain names, all read-only; the stubs type `fields` as possibly nested groups.
    readonly_fields = fields  # type: ignore[assignment]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class PaymentTransitionInline(LedgerEntryInline):
    model = PaymentTransition
    fields = ["from_status", "to_status", "reason", "actor", "created_at"]
    readonly_fields = fields
    verbose_name_plural = "status history"


class RefundInline(LedgerEntryInline):
    model = Refund
    fields = ["refund_reference", "amount", "currency", "status", "recorded_at", "confirmed_at"]
    readonly_fields = fields


class DisputeInline(LedgerEntryInline):
    model = Dispute
    fields = ["gateway_id", "status", "resolution", "outcome", "opened_at", "resolved_at"]
    readonly_fields = fields


class ResolveForm(forms.Form):
    decision = forms.ChoiceField(widget=forms.RadioSelect)
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=500,
        help_text="Why: what you checked (e.g. the refund in the Paystack dashboard).",
    )

    def __init__(self, *args: Any, payment: Payment, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Declared above as a ChoiceField; `fields` types each one as a plain Field.
        cast(forms.ChoiceField, self.fields["decision"]).choices = decisions_for(payment)


def decisions_for(payment: Payment) -> list[tuple[str, str]]:
    """The decisions that apply to a payment as it is now."""
    if payment.status == Payment.Status.FLAGGED:
        return [
            (Decision.CREDIT.value, "Credit anyway: the money is ours; count the votes"),
            (Decision.REFUNDED.value, "Mark refunded: the money went back; no votes"),
        ]
    return [
        (Decision.KEEP.value, "Keep the votes: the charge stands"),
        (Decision.REFUNDED.value, "Mark refunded: the money went back; take the votes back"),
    ]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "reference",
        "contestant",
        "votes",
        "amount",
        "currency",
        "status",
        "attention",
        "created_at",
    ]
    list_filter = ["status", "attention", "created_at"]
    search_fields = ["reference", "email"]
    date_hierarchy = "created_at"
    inlines = [LedgerEntryInline, PaymentTransitionInline, RefundInline, DisputeInline]

    def get_urls(self) -> list[URLPattern]:
        resolve = path(
            "<path:object_id>/resolve/",
            self.admin_site.admin_view(self.resolve_view),
            name="ledger_payment_resolve",
        )
        # Before the defaults: their "<path:object_id>/" catch-all would swallow it.
        return [resolve, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, object] | None = None,
    ) -> HttpResponse:
        can_resolve = request.user.has_perm(RESOLVE_PERMISSION)
        context = {**(extra_context or {}), "can_resolve": can_resolve}
        return super().change_view(request, object_id, form_url, extra_context=context)

    def resolve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A person decides about a payment that needs attention; who and why are recorded."""
        if not request.user.has_perm(RESOLVE_PERMISSION):
            raise PermissionDenied
        payment = self.get_object(request, unquote(object_id))
        if payment is None:
            # Django's own "not found" redirect for admin views; private, so not in the stubs.
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined, no-any-return]
        change_url = reverse("admin:ledger_payment_change", args=[payment.pk])
        if payment.attention == Payment.Attention.NONE:
            self.message_user(request, f"{payment} needs no decision.", messages.WARNING)
            return HttpResponseRedirect(change_url)
        form = ResolveForm(request.POST or None, payment=payment)
        if request.method == "POST" and form.is_valid():
            actor, decision = request.user.get_username(), Decision(form.cleaned_data["decision"])
            try:
                with recorded(
                    action="resolve",
                    actor=actor,
                    via=OperatorAction.Via.ADMIN,
                    arguments={"decision": decision.value, "note": form.cleaned_data["note"]},
                ) as record:
                    record.touched(payments=[payment.reference])
                    settlement = resolve_attention(
                        reference=payment.reference,
                        decision=decision,
                        actor=actor,
                        note=form.cleaned_data["note"],
                    )
                    record.count({settlement.outcome.value: 1})
            except CannotResolve as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                status = settlement.payment.status
                self.message_user(request, f"{payment} is now {status}.", messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Resolve {payment}",
            "opts": self.opts,
            "payment": payment,
            "form": form,
        }
        return TemplateResponse(request, "admin/ledger/payment/resolve.html", context)


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ["gateway_id", "payment", "status", "outcome", "opened_at", "resolved_at"]
    list_filter = ["status", "outcome"]
    search_fields = ["=gateway_id", "payment__reference"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["payment", "contestant", "kind", "votes", "created_at"]
    list_filter = ["kind"]
    search_fields = ["payment__reference"]


@admin.register(OperatorAction)
class OperatorActionAdmin(ReadOnlyAdmin):
    """The operator log: read-only; search by a payment reference or a delivery id."""

    list_display = [
        "started_at",
        "action",
        "actor",
        "via",
        "dry_run",
        "outcome",
        "counts",
        "finished_at",
    ]
    list_filter = ["action", "actor", "via", "outcome", "dry_run", "started_at"]
    date_hierarchy = "started_at"
    search_fields = ["actor", "action"]
    search_help_text = "an actor or action; or a payment reference or delivery id it touched"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[OperatorAction], search_term: str
    ) -> tuple[QuerySet[OperatorAction], bool]:
        """Also find the actions that touched a payment reference or a delivery id."""
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            touching = queryset.filter(payment_references__contains=[term])
            if term.isdigit():
                touching |= queryset.filter(delivery_ids__contains=[int(term)])
            found |= touching
        return found, duplicates


class CertifiedTotalInline(LedgerEntryInline):
    model = CertifiedTotal
    fields = ["contestant", "votes", "votes_under_dispute"]
    readonly_fields = fields


@admin.register(Certification)
class CertificationAdmin(ReadOnlyAdmin):
    list_display = ["contest", "number", "certified_at", "entries", "root", "actor"]
    list_filter = ["contest"]
    fields = [
        "contest",
        "number",
        "certified_at",
        "entries",
        "horizon",
        "root",
        "flagged",
        "reason",
        "actor",
    ]
    readonly_fields = fields  # type: ignore[assignment]
    inlines = [CertifiedTotalInline]
