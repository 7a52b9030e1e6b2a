"""The JSON API the contest page's script uses (docs/contract.md, HTTP).

Each view parses, calls one function, and renders. None of them credits anything or calls
the gateway to verify: crediting follows the verify API in a worker, never a request a
browser can replay.
"""

import json
from dataclasses import dataclass
from typing import Any, cast

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from ledger.models import MAX_VOTES_PER_PAYMENT, Contest, Payment
from ledger.selectors import (
    contest_by_slug,
    contestants_of,
    latest_dispute,
    listed_contests,
    open_contest,
    payment_with_contestant,
)
from ledger.services import VotingClosed
from paystack.types import is_reference
from voting.checkout import (
    OPEN_PAYMENTS_RETRY_AFTER_SECONDS,
    CheckoutUnavailable,
    TooManyOpenPayments,
    UnknownContestant,
    start_checkout,
)
from voting.limits import seconds_to_wait

MAX_VOTES = MAX_VOTES_PER_PAYMENT
# Longer addresses would not fit Payment.email: refuse them as input, not as a 500. An
# EmailField always has a max_length, though a plain field's may be None.
MAX_EMAIL_LENGTH = cast(int, Payment._meta.get_field("email").max_length)
_validate_email = EmailValidator()


class InvalidOrder(Exception):
    """The order's body is not what the API takes; the message names the field."""


@dataclass(frozen=True)
class Order:
    contestant_id: int
    votes: int
    email: str


CONTESTANT_FIELDS = ("id", "name", "slug", "votes", "votes_under_dispute")


@never_cache
@require_GET
def api_contests(request: HttpRequest) -> JsonResponse:
    """Every contest with its status: open first, then upcoming, then closed and certified."""
    listed = listed_contests(now=timezone.now())
    return JsonResponse(
        {"contests": [contest_fields(item.contest, status=item.status) for item in listed]}
    )


@never_cache
@require_GET
def api_contest_contestants(request: HttpRequest, slug: str) -> JsonResponse:
    """One contest's contestants and live totals, whatever its status; its page polls this."""
    listed = contest_by_slug(slug=slug, now=timezone.now())
    if listed is None:
        return _error(404, "unknown contest")
    rows = contestants_of(contest=listed.contest).values(*CONTESTANT_FIELDS)
    return JsonResponse({"contestants": list(rows)})


@never_cache
@require_GET
def api_contestants(request: HttpRequest) -> JsonResponse:
    """The open contest's contestants and totals (the one closing first, if several are);
    kept for clients of the single-contest API."""
    contestants = contestants_of(contest=open_contest(now=timezone.now()))
    return JsonResponse({"contestants": list(contestants.values(*CONTESTANT_FIELDS))})


def contest_fields(contest: Contest, *, status: Contest.Status) -> dict[str, object]:
    return {
        "slug": contest.slug,
        "name": contest.name,
        "opens_at": contest.opens_at.isoformat(),
        "closes_at": contest.closes_at.isoformat(),
        "price_per_vote": contest.price_per_vote,
        "currency": contest.currency,
        "status": status.value,
    }


# The page's own script posts JSON here, and no session is used, so CSRF is exempt. A
# cross-site page cannot send application/json without the browser asking us first (a CORS
# preflight, which we never grant); a <form enctype=text/plain> can send a body that parses
# as JSON, so any other content type is refused with 415 before the body is read.
@csrf_exempt
@require_POST
def api_create_payment(request: HttpRequest) -> JsonResponse:
    """Start buying votes: a pending payment and the Paystack checkout URL to send the payer to."""
    wait = seconds_to_wait(request, group="api-payments")
    if wait is not None:
        return _too_many_requests(wait)
    if (request.content_type or "").lower() != "application/json":
        return _error(415, "Content-Type must be application/json")
    try:
        order = parse_order(request.body)
        checkout = start_checkout(
            contestant_id=order.contestant_id,
            votes=order.votes,
            email=order.email,
            callback_url=request.build_absolute_uri(reverse("voting:payment-callback")),
        )
    except InvalidOrder as exc:
        return _error(400, str(exc))
    except UnknownContestant:
        return _error(400, "contestant: no such contestant")
    except TooManyOpenPayments:
        response = _error(
            429, "this email has too many unpaid checkouts open; pay or wait for one to close"
        )
        response["Retry-After"] = str(OPEN_PAYMENTS_RETRY_AFTER_SECONDS)
        return response
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
    # Outside Paystack's alphabet it cannot be ours; a NUL byte would fail the query (a 500).
    payment = payment_with_contestant(reference=reference) if is_reference(reference) else None
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
            "dispute": _dispute(payment),
        }
    )


def _dispute(payment: Payment) -> dict[str, str] | None:
    """The payment's latest chargeback, if it has one: its status and, once resolved, outcome."""
    dispute = latest_dispute(payment)
    if dispute is None:
        return None
    return {"status": dispute.status, "outcome": dispute.outcome}


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


def _too_many_requests(wait: int) -> JsonResponse:
    response = _error(429, f"too many requests from your address; try again in {wait} s")
    response["Retry-After"] = str(wait)
    return response
