"""The pages a fan sees: the contests, one contest with its live leaderboard, the payer's
return from Paystack, and the payment's status page with its receipt. Each view parses, calls
one function, and renders."""

import logging
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery_app import PUBLISH_ERRORS
from ledger.models import Contest, Payment
from ledger.selectors import (
    contest_by_slug,
    contestants_of,
    latest_dispute,
    listed_contests,
    payment_with_contestant,
    receipt_of,
)
from ledger.services import AWAITING_SETTLEMENT, verified_within_cooldown
from paystack.types import is_reference
from tasks.verification import verify_payment
from voting.api import MAX_VOTES
from voting.board import Line, board_of
from voting.limits import seconds_to_wait
from voting.results import receipt_document

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


@dataclass(frozen=True)
class Card:
    contest: Contest
    status: Contest.Status
    price: str


# The home page's sections, in order, and the statuses each lists.
SECTIONS = [
    ("open", "Open now", {Contest.Status.OPEN}),
    ("upcoming", "Coming up", {Contest.Status.UPCOMING}),
    ("closed", "Closed", {Contest.Status.CLOSED, Contest.Status.CERTIFIED}),
]


@require_GET
def home_page(request: HttpRequest) -> HttpResponse:
    """Every contest: open ones first, then upcoming, then closed and certified ones."""
    cards = [
        Card(contest=item.contest, status=item.status, price=price_of(item.contest))
        for item in listed_contests(now=timezone.now())
    ]
    sections = [
        (key, heading, [card for card in cards if card.status in statuses])
        for key, heading, statuses in SECTIONS
    ]
    return render(request, "voting/home.html", {"sections": sections, "any": bool(cards)})


@require_GET
def contest_page(request: HttpRequest, slug: str) -> HttpResponse:
    """One contest: its leaderboard, live while votes can still move, and the form to buy
    votes while it is open."""
    listed = contest_by_slug(slug=slug, now=timezone.now())
    if listed is None:
        return render(request, "voting/contest_not_found.html", status=404)
    contestants = list(contestants_of(contest=listed.contest))
    board = board_of(
        Line(
            id=contestant.pk,
            name=contestant.name,
            slug=contestant.slug,
            votes=contestant.votes,
            votes_under_dispute=contestant.votes_under_dispute,
        )
        for contestant in contestants
    )
    context = {
        "contest": listed.contest,
        "status": listed.status,
        # Totals move while open, and after the close until certified (late settlements).
        "live": listed.status in (Contest.Status.OPEN, Contest.Status.CLOSED),
        "board": board,
        "contestants": contestants,
        "price": price_of(listed.contest),
        "max_votes": MAX_VOTES,
    }
    return render(request, "voting/contest.html", context)


def price_of(contest: Contest) -> str:
    return format_amount(contest.price_per_vote, contest.currency)


@never_cache
@require_GET
def payment_page(request: HttpRequest, reference: str) -> HttpResponse:
    """Where the payer lands after Paystack; its script follows the status until it settles."""
    payment = _payment(reference)
    if payment is None:
        return _not_found(request, reference)
    receipt = receipt_of(payment=payment)
    context = {
        "payment": payment,
        "contest": payment.contestant.contest,
        "receipt": receipt,
        "proof": receipt_document(request, payment, receipt),
        "receipt_url": request.build_absolute_uri(
            reverse("voting:payment-receipt", args=[payment.reference])
        ),
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
