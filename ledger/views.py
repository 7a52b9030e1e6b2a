"""The voting side over HTTP: the JSON API the page's script uses, the payer's return from
Paystack, and the two pages. Each view parses, calls one ledger function, and renders.

None of these views credits anything or calls the gateway to verify: crediting follows the
verify API in a worker (tally.verify_payment), never a request a browser can replay.
"""

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from config.celery_app import PUBLISH_ERRORS, VERIFY_PAYMENT_TASK
from config.celery_app import app as celery_app
from ledger.checkout import CheckoutUnavailable, UnknownContestant, start_checkout
from ledger.models import Payment
from ledger.selectors import contestants_of, open_contest, payment_with_contestant
from ledger.services import VotingClosed

logger = logging.getLogger(__name__)

MAX_VOTES = 1000
# Longer addresses would not fit Payment.email: refuse them as input, not as a 500.
MAX_EMAIL_LENGTH = Payment._meta.get_field("email").max_length
_validate_email = EmailValidator()

# What the payer reads; each starts with the raw status so the word itself is on screen.
STATUS_WORDS = {
    Payment.Status.PENDING: "pending: waiting for Paystack to confirm your payment",
    Payment.Status.CREDITED: "credited: your votes have been counted",
    Payment.Status.FAILED: "failed: the payment did not go through and no votes were counted",
    Payment.Status.FLAGGED: "flagged: the payment needs a check by our team before votes count",
    Payment.Status.REVERSED: "reversed: the payment was refunded and its votes removed",
}


class InvalidOrder(Exception):
    """The order's body is not what the API takes; the message names the field."""


@dataclass(frozen=True)
class Order:
    contestant_id: int
    votes: int
    email: str


# --- JSON API -----------------------------------------------------------------------------


@never_cache
@require_GET
def api_contestants(request: HttpRequest) -> JsonResponse:
    """The open contest's contestants and totals; the page polls this for live numbers."""
    contestants = contestants_of(contest=open_contest(now=timezone.now()))
    rows = contestants.values("id", "name", "slug", "votes")
    return JsonResponse({"contestants": list(rows)})


# The page's own script posts JSON here; a cross-site post can only create a pending payment
# for an email the poster typed (no money moves, no session is used), so CSRF is exempt.
@csrf_exempt
@require_POST
def api_create_payment(request: HttpRequest) -> JsonResponse:
    """Start buying votes: a pending payment and the Paystack checkout URL to send the payer to."""
    try:
        order = parse_order(request.body)
        checkout = start_checkout(
            contestant_id=order.contestant_id,
            votes=order.votes,
            email=order.email,
            callback_url=request.build_absolute_uri(reverse("ledger:payment-callback")),
        )
    except InvalidOrder as exc:
        return _error(400, str(exc))
    except UnknownContestant:
        return _error(400, "contestant: no such contestant")
    except VotingClosed as exc:
        return _error(400, str(exc))
    except CheckoutUnavailable:
        # The reason (which may name our configuration) stays in the payment row and the log.
        return _error(502, "the payment gateway could not start a checkout; please try again")
    payment = checkout.payment
    return JsonResponse(
        {
            "reference": payment.reference,
            "amount": payment.amount,
            "currency": payment.currency,
            "votes": payment.votes,
            "contestant": payment.contestant_id,
            "status": payment.status,
            "authorization_url": checkout.authorization_url,
        },
        status=201,
    )


@never_cache
@require_GET
def api_payment(request: HttpRequest, reference: str) -> JsonResponse:
    """One payment's state; the status page polls this until the worker settles it."""
    payment = payment_with_contestant(reference=reference)
    if payment is None:
        return _error(404, "unknown reference")
    return JsonResponse(
        {
            "reference": payment.reference,
            "status": payment.status,
            "votes": payment.votes,
            "amount": payment.amount,
            "currency": payment.currency,
            "contestant": payment.contestant_id,
            "credited_at": payment.credited_at.isoformat() if payment.credited_at else None,
        }
    )


def parse_order(body: bytes) -> Order:
    """The order in a POST body, or InvalidOrder naming the first field that is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested past the stack
        raise InvalidOrder("body must be a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidOrder("body must be a JSON object")
    contestant_id = _integer(data, "contestant")
    votes = _integer(data, "votes")
    if not 1 <= votes <= MAX_VOTES:
        raise InvalidOrder(f"votes must be between 1 and {MAX_VOTES}")
    return Order(contestant_id=contestant_id, votes=votes, email=_email(data))


def _integer(data: dict[str, Any], field: str) -> int:
    value = data.get(field)
    if value is None:
        raise InvalidOrder(f"{field} is required")
    # bool is a subclass of int, and 2.0 is not a whole number of votes: exact type only.
    if type(value) is not int:
        raise InvalidOrder(f"{field} must be an integer")
    return value


def _email(data: dict[str, Any]) -> str:
    value = data.get("email")
    if value is None or value == "":
        raise InvalidOrder("email is required")
    if not isinstance(value, str):
        raise InvalidOrder("email must be a valid email address")
    email = value.strip()
    if len(email) > MAX_EMAIL_LENGTH or not _is_email(email):
        raise InvalidOrder("email must be a valid email address")
    return email


def _is_email(value: str) -> bool:
    try:
        _validate_email(value)
    except ValidationError:
        return False
    return True


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


# --- The payer's return from Paystack -----------------------------------------------------


@never_cache
@require_GET
def payment_callback(request: HttpRequest) -> HttpResponse:
    """Paystack sends the payer back here. The visit proves nothing (anyone can type the
    URL): it only asks a worker to verify now rather than at the next reconcile, then shows
    the status page. No gateway call and no credit happen in this request."""
    reference = request.GET.get("reference") or request.GET.get("trxref") or ""
    payment = payment_with_contestant(reference=reference) if reference else None
    if payment is None:
        return _not_found(request, reference)
    if payment.status == Payment.Status.PENDING:
        _enqueue_verification(payment.reference)
    return redirect("ledger:payment-status", reference=payment.reference)


def _enqueue_verification(reference: str) -> None:
    """Ask a worker to verify. This request wrote nothing, so there is no commit to wait for
    and a plain delay is right. A broker outage must not cost the payer their status page:
    reconciliation verifies the payment once it has been pending RECONCILE_AFTER_SECONDS."""
    try:
        celery_app.send_task(VERIFY_PAYMENT_TASK, args=(reference,))
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
    return render(request, "ledger/contest.html", context)


@never_cache
@require_GET
def payment_page(request: HttpRequest, reference: str) -> HttpResponse:
    """Where the payer lands after Paystack; its script follows the status until it settles."""
    payment = payment_with_contestant(reference=reference)
    if payment is None:
        return _not_found(request, reference)
    context = {
        "payment": payment,
        "amount": format_amount(payment.amount, payment.currency),
        "status_text": STATUS_WORDS[Payment.Status(payment.status)],
        "status_words": {status.value: words for status, words in STATUS_WORDS.items()},
    }
    return render(request, "ledger/payment.html", context)


def _not_found(request: HttpRequest, reference: str) -> HttpResponse:
    return render(request, "ledger/payment_not_found.html", {"reference": reference}, status=404)


def format_amount(amount: int, currency: str) -> str:
    """Minor units as the payer reads them: "₦1,500.00" for NGN, "150.00 GHS" otherwise.

    Integer arithmetic only (no floats for money); every currency we take has 100 minor units
    (PAYSTACK.md §7).
    """
    major, minor = divmod(amount, 100)
    number = f"{major:,}.{minor:02d}"
    return f"₦{number}" if currency == "NGN" else f"{number} {currency}"
