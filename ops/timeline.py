"""One page per payment for the person on call: everything that happened to it, in time order.

Its deliveries (event, attempts, outcome, last error), its status changes (and who decided),
its ledger entries, refunds and disputes, the gateway's times (paid, last verified), and the
operator actions that touched it; with the actions that apply (replay a delivery, resolve the
payment) on the same page. "I paid but my votes are missing": search the reference, read this.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from ledger.models import Payment
from ledger.operator_log import actions_touching
from paystack.types import is_reference
from webhooks.models import Delivery


@dataclass(frozen=True)
class Moment:
    at: datetime
    kind: str  # payment, delivery, status, ledger, refund, dispute, gateway, operator
    title: str
    detail: str = ""
    link: str = ""
    actions: list[tuple[str, str]] = field(default_factory=list)  # (label, url)


def payment_timeline(payment: Payment) -> list[Moment]:
    """Every recorded moment of one payment's story, oldest first."""
    moments = [
        Moment(
            payment.created_at,
            "payment",
            f"created: {payment.votes} vote(s) for {payment.contestant}",
            f"{payment.amount} {payment.currency} (minor units), {payment.email}",
        ),
        *_gateway_moments(payment),
        *_delivery_moments(payment),
        *(
            Moment(
                t.created_at,
                "status",
                f"{t.from_status} → {t.to_status}",
                _decided(t.reason, t.actor),
            )
            for t in payment.transitions.all()
        ),
        *(
            Moment(e.created_at, "ledger", f"{e.kind} {e.votes:+d} vote(s)", f"entry {e.pk}")
            for e in payment.ledger_entries.all()
        ),
        *_refund_moments(payment),
        *_dispute_moments(payment),
        *(
            Moment(
                action.started_at,
                "operator",
                f"{action.action} by {action.actor} ({action.via})",
                _outcome_of(action.outcome, action.dry_run, action.counts),
                reverse("admin:ledger_operatoraction_change", args=[action.pk]),
            )
            for action in actions_touching(payment_reference=payment.reference)
        ),
    ]
    return sorted(moments, key=lambda moment: moment.at)


def _outcome_of(outcome: str, dry_run: bool, counts: dict[str, int]) -> str:
    done = ", ".join(f"{name} {number}" for name, number in counts.items())
    return f"{outcome}{' (dry run)' if dry_run else ''}{': ' + done if done else ''}"


def _decided(reason: str, actor: str) -> str:
    return f"{reason} (decided by {actor})" if actor else reason


def _gateway_moments(payment: Payment) -> list[Moment]:
    moments = []
    if payment.paid_at is not None:
        moments.append(Moment(payment.paid_at, "gateway", "paid, says the gateway"))
    if payment.verified_at is not None:
        moments.append(Moment(payment.verified_at, "gateway", "last verified with the gateway"))
    return moments


def _delivery_moments(payment: Payment) -> list[Moment]:
    moments = []
    for delivery in Delivery.objects.filter(reference=payment.reference).order_by("pk"):
        url = reverse("admin:webhooks_delivery_change", args=[delivery.pk])
        replay = reverse("admin:webhooks_delivery_replay", args=[delivery.pk])
        repeats = (
            f", delivered {delivery.delivery_count} times" if delivery.delivery_count > 1 else ""
        )
        moments.append(
            Moment(
                delivery.received_at,
                "delivery",
                f"{delivery.event} received (delivery {delivery.pk}{repeats})",
                f"now {delivery.status}; {delivery.attempts} attempt(s)",
                url,
                [("Replay", replay)],
            )
        )
        if delivery.processed_at is not None:
            error = f"; last error: {delivery.last_error}" if delivery.last_error else ""
            moments.append(
                Moment(
                    delivery.processed_at,
                    "delivery",
                    f"{delivery.event} {delivery.status}: {delivery.outcome or '-'}",
                    f"delivery {delivery.pk}{error}",
                    url,
                )
            )
    return moments


def _refund_moments(payment: Payment) -> list[Moment]:
    moments = []
    for refund in payment.refunds.all():
        name = refund.refund_reference or "(no reference yet)"
        amount = f"{refund.amount} {refund.currency}" if refund.amount is not None else ""
        moments.append(Moment(refund.recorded_at, "refund", f"refund {name} recorded", amount))
        if refund.updated_at > refund.recorded_at:
            moments.append(Moment(refund.updated_at, "refund", f"refund {name} {refund.status}"))
        if refund.confirmed_at is not None:
            moments.append(
                Moment(refund.confirmed_at, "refund", f"refund {name} confirmed by the gateway")
            )
    return moments


def _dispute_moments(payment: Payment) -> list[Moment]:
    moments = []
    for dispute in payment.disputes.all():
        moments.append(
            Moment(dispute.opened_at, "dispute", f"chargeback {dispute.gateway_id} opened")
        )
        if dispute.reminded_at is not None:
            moments.append(Moment(dispute.reminded_at, "dispute", "chargeback reminder"))
        if dispute.resolved_at is not None:
            moments.append(
                Moment(
                    dispute.resolved_at,
                    "dispute",
                    f"chargeback {dispute.gateway_id} resolved: {dispute.get_outcome_display()}",
                    dispute.resolution,
                )
            )
    return moments


@require_GET
@staff_member_required
@permission_required("ledger.view_payment", raise_exception=True)
def payment_timeline_page(request: HttpRequest, reference: str) -> HttpResponse:
    if not is_reference(reference):
        raise Http404("no such payment")
    payment = (
        Payment.objects.select_related("contestant__contest").filter(reference=reference).first()
    )
    if payment is None:
        raise Http404("no such payment")
    can_resolve = bool(payment.attention) and request.user.has_perm("ledger.change_payment")
    context = {
        "title": f"Payment {payment.reference}",
        "payment": payment,
        "moments": payment_timeline(payment),
        "payment_url": reverse("admin:ledger_payment_change", args=[payment.pk]),
        "resolve_url": (
            reverse("admin:ledger_payment_resolve", args=[payment.pk]) if can_resolve else ""
        ),
    }
    return render(request, "ops/payment_timeline.html", context)
