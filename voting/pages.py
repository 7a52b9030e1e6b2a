"""The pages a fan sees: the contest with live totals, the payer's return from Paystack, and
the payment's status page. Each view parses, calls one function, and renders."""

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery_app import PUBLISH_ERRORS
from ledger.models import Payment
from ledger.selectors import (
    contestants_of,
    latest_dispute,
    open_contest,
    payment_with_contestant,
)
from ledger.services import AWAITING_SETTLEMENT, verified_within_cooldown
from paystack.types import is_reference
from tasks.verification import verify_payment
from voting.api import MAX_VOTES
from voting.limits import seconds_to_wait

logger = logging.getLogger(__name__)

# What the payer reads; each starts with the raw status so the word itself is on screen.
STATUS_WORDS = {
    Payment.Status.PENDING: "pending: waiting for Paystack to confirm your payment",
    Payment.Status.CREDITED: "credited: your votes have been counted",
    Payment.Status.FAILED: "failed: the payment did not go through and no votes were counted",
    Payment.Status.FLAGGED: "flagged: the payment needs a check by our team before votes count",
    Payment.Status.REVERSED: "reversed: the payment was refunded and its votes removed",
}


# --- The payer's return from Paystack -----------------------------------------------------


@never_cache
@require_GET
def payment_callback(request: HttpRequest) -> HttpResponse:
    """Paystack sends the payer back here. The visit proves nothing (anyone can type the
    URL): it only asks a worker to verify now rather than at the next reconcile, then shows
    the status page. No gateway call and no credit happen in this request."""
    wait = seconds_to_wait(request, group="payment-callback")
    if wait is not None:
        response = render(request, "voting/too_many_requests.html", {"wait": wait}, status=429)
        response["Retry-After"] = str(wait)
        return response
    reference = request.GET.get("reference") or request.GET.get("trxref") or ""
    payment = _payment(reference)
    if payment is None:
        return _not_found(request, reference)
    # A failed payment too: the payer may have completed a checkout we had given up on. Not
    # when a verify ran moments ago: its answer stands, and a reload must cost nothing.
    fresh = payment.verified_at is None or not verified_within_cooldown(payment, now=timezone.now())
    if payment.status in AWAITING_SETTLEMENT and fresh:
        _enqueue_verification(payment.reference)
    return redirect("voting:payment-status", reference=payment.reference)


def _enqueue_verification(reference: str) -> None:
    """Ask a worker to verify. This request wrote nothing, so there is no commit to wait for
    and a plain delay is right. A broker outage must not cost the payer their status page:
    reconciliation verifies the payment once it has been pending RECONCILE_AFTER_SECONDS."""
    try:
        verify_payment.delay(reference)
    except PUBLISH_ERRORS as exc:
        logger.warning(
            "broker unavailable; verification left to reconciliation",
            extra={"reference": reference, "error": repr(exc)},
        )


# --- Pages --------------------------------------------------------------------------------


@require_GET
def contest_page(request: HttpRequest) -> HttpResponse:
    """The open contest with live totals and the form to buy votes."""
    contest = open_contest(now=timezone.now())
    context = {
        "contest": contest,
        "contestants": contestants_of(contest=contest),
        "price": format_amount(contest.price_per_vote, contest.currency) if contest else "",
        "max_votes": MAX_VOTES,
    }
    return render(request, "voting/contest.html", context)


@never_cache
@require_GET
def payment_page(request: HttpRequest, reference: str) -> HttpResponse:
    """Where the payer lands after Paystack; its script follows the status until it settles."""
    payment = _payment(reference)
    if payment is None:
        return _not_found(request, reference)
    context = {
        "payment": payment,
        "amount": format_amount(payment.amount, payment.currency),
        "status_text": STATUS_WORDS[Payment.Status(payment.status)],
        "dispute": latest_dispute(payment),
        "status_words": {status.value: words for status, words in STATUS_WORDS.items()},
    }
    return render(request, "voting/payment.html", context)


def _payment(reference: str) -> Payment | None:
    """The payment, or None for a reference that is missing or cannot be ours.

    Checked against Paystack's alphabet before any query: a NUL byte (`%00` in the URL) would
    fail in PostgreSQL, a 500 with a traceback for anyone who types it.
    """
    return payment_with_contestant(reference=reference) if is_reference(reference) else None


def _not_found(request: HttpRequest, reference: str) -> HttpResponse:
    # Only a well-formed reference is echoed back; junk is not worth showing the payer.
    shown = reference if is_reference(reference) else ""
    return render(request, "voting/payment_not_found.html", {"reference": shown}, status=404)


def format_amount(amount: int, currency: str) -> str:
    """Minor units as the payer reads them: "₦1,500.00" for NGN, "150.00 GHS" otherwise.

    Integer arithmetic only (no floats for money); every currency we take has 100 minor units
    (docs/paystack.md §7).
    """
    major, minor = divmod(amount, 100)
    number = f"{major:,}.{minor:02d}"
    return f"₦{number}" if currency == "NGN" else f"{number} {currency}"
