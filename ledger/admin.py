from django.contrib import admin

from ledger.models import Contest, Contestant, LedgerEntry, Payment, PaymentTransition


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only ledger.services may write."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ContestantTotals:
    """Admin pages show each contestant's total: the sum of its vote shards."""

    def get_queryset(self, request):
        return super().get_queryset(request).with_votes()

    @admin.display(description="votes")
    def total_votes(self, contestant: Contestant) -> int:
        return contestant.votes


class ContestantInline(ContestantTotals, admin.TabularInline):
    model = Contestant
    fields = ["name", "slug", "total_votes"]
    readonly_fields = ["total_votes"]
    extra = 0


@admin.register(Contest)
class ContestAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "price_per_vote", "currency", "opens_at", "closes_at"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ContestantInline]


@admin.register(Contestant)
class ContestantAdmin(ContestantTotals, admin.ModelAdmin):
    list_display = ["name", "contest", "total_votes"]
    list_filter = ["contest"]
    search_fields = ["name", "slug"]
    readonly_fields = ["total_votes"]


class LedgerEntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = ["kind", "votes", "contestant", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class PaymentTransitionInline(LedgerEntryInline):
    model = PaymentTransition
    fields = ["from_status", "to_status", "reason", "created_at"]
    readonly_fields = fields
    verbose_name_plural = "status history"


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "reference",
        "contestant",
        "votes",
        "amount",
        "currency",
        "status",
        "created_at",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["reference", "email"]
    date_hierarchy = "created_at"
    inlines = [LedgerEntryInline, PaymentTransitionInline]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["payment", "contestant", "kind", "votes", "created_at"]
    list_filter = ["kind"]
    search_fields = ["payment__reference"]
