"""Certified results and the payer's receipt with its proof (docs/results.md).

Each view parses, calls the ledger's selectors, and renders: HTML for people, JSON and CSV for
anyone who wants to check. Nothing here computes a root over a whole contest; that happened
once, at certification.
"""

import csv
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ledger.models import Certification, Contest, Payment
from ledger.selectors import (
    Receipt,
    certifications_of,
    contest_by_slug,
    payment_with_contestant,
    receipt_of,
)
from paystack.types import is_reference
from voting.api import contest_fields
from voting.board import Board, Line, board_of

RECEIPT_FORMAT = "tally-receipt/1"
REASON_WORDS = dict(Payment.Attention.choices)
CSV_COLUMNS = (
    *("contest", "certification", "root", "rank", "contestant_id", "contestant", "slug"),
    *("votes", "votes_under_dispute", "share"),
)


@dataclass(frozen=True)
class Change:
    name: str
    votes: int  # signed: what the amendment added to or took from the contestant


@dataclass(frozen=True)
class Published:
    """A certification as the results page lists it."""

    certification: Certification
    changes: list[Change]  # against the one before; empty for the certification


# --- the result: HTML, JSON, CSV ----------------------------------------------------------


@require_GET
def results_page(request: HttpRequest, slug: str) -> HttpResponse:
    listed = contest_by_slug(slug=slug, now=timezone.now())
    if listed is None:
        return _contest_not_found(request)
    contest = listed.contest
    certifications = certifications_of(contest=contest)
    grace = timedelta(seconds=settings.CERTIFY_GRACE_SECONDS)
    context = {"contest": contest, "status": listed.status, "certify_at": contest.closes_at + grace}
    if not certifications:
        return render(request, "voting/results.html", context, status=404)
    latest = certifications[-1]
    context |= {
        "latest": latest,
        "first": certifications[0],
        "board": board_for(latest),
        "flagged": [(REASON_WORDS.get(reason, reason), n) for reason, n in latest.flagged.items()],
        "published": list(reversed(_published(certifications))),
    }
    return render(request, "voting/results.html", context)


@require_GET
def results_json(request: HttpRequest, slug: str) -> JsonResponse:
    listed = contest_by_slug(slug=slug, now=timezone.now())
    if listed is None:
        return JsonResponse({"error": "unknown contest"}, status=404)
    certifications = certifications_of(contest=listed.contest)
    if not certifications:
        return JsonResponse({"error": "the result is not certified yet"}, status=404)
    return JsonResponse(results_document(listed.contest, certifications))


@require_GET
def results_csv(request: HttpRequest, slug: str) -> HttpResponse:
    listed = contest_by_slug(slug=slug, now=timezone.now())
    certifications = [] if listed is None else certifications_of(contest=listed.contest)
    if listed is None or not certifications:
        return HttpResponse("no certified result\n", status=404, content_type="text/plain")
    latest = certifications[-1]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slug}-results.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for ranked in board_for(latest).lines:
        line = ranked.line
        writer.writerow(
            (
                *(slug, latest.number, latest.root, ranked.rank),
                *(line.id, line.name, line.slug, line.votes, line.votes_under_dispute),
                ranked.share,
            )
        )
    return response


def board_for(certification: Certification) -> Board:
    return board_of(
        Line(
            id=total.contestant_id,
            name=total.contestant.name,
            slug=total.contestant.slug,
            votes=total.votes,
            votes_under_dispute=total.votes_under_dispute,
        )
        for total in certification.totals.all()
    )


def _published(certifications: list[Certification]) -> list[Published]:
    published = []
    before: dict[int, int] = {}
    for certification in certifications:
        votes = {total.contestant_id: total.votes for total in certification.totals.all()}
        names = {total.contestant_id: total.contestant.name for total in certification.totals.all()}
        changes = [
            Change(name=names[contestant], votes=votes[contestant] - before.get(contestant, 0))
            for contestant in sorted(votes)
            if certification.number and votes[contestant] != before.get(contestant, 0)
        ]
        published.append(Published(certification=certification, changes=changes))
        before = votes
    return published


def results_document(contest: Contest, certifications: list[Certification]) -> dict[str, object]:
    """The published result: the latest totals first, then every certification in order."""
    latest = certifications[-1]
    return {
        "contest": contest_fields(contest, status=Contest.Status.CERTIFIED),
        **_certification_fields(latest),
        "contestants": _lines(latest),
        "flagged_payments": latest.flagged,
        "certifications": [
            {
                **_certification_fields(certification),
                "reason": certification.reason,
                "contestants": _lines(certification),
                "flagged_payments": certification.flagged,
            }
            for certification in certifications
        ],
    }


def _certification_fields(certification: Certification) -> dict[str, object]:
    return {
        "number": certification.number,
        "kind": "amendment" if certification.is_amendment else "certification",
        "root": certification.root,
        "entries": certification.entries,
        "certified_at": certification.certified_at.isoformat(),
    }


def _lines(certification: Certification) -> list[dict[str, object]]:
    return [
        {
            "id": ranked.line.id,
            "name": ranked.line.name,
            "slug": ranked.line.slug,
            "votes": ranked.line.votes,
            "votes_under_dispute": ranked.line.votes_under_dispute,
        }
        for ranked in sorted(board_for(certification).lines, key=lambda ranked: ranked.line.id)
    ]


# --- the receipt ----------------------------------------------------------------------------


@never_cache
@require_GET
def receipt_json(request: HttpRequest, reference: str) -> JsonResponse:
    """The payment's ledger entries with their Merkle paths to the latest certified root; a
    contest not certified yet gives `"certification": null` and no leaves."""
    # Outside Paystack's alphabet it cannot be ours; a NUL byte would fail the query (a 500).
    payment = payment_with_contestant(reference=reference) if is_reference(reference) else None
    if payment is None:
        return JsonResponse({"error": "unknown reference"}, status=404)
    return JsonResponse(receipt_document(request, payment, receipt_of(payment=payment)))


def receipt_document(request: HttpRequest, payment: Payment, receipt: Receipt) -> dict[str, object]:
    contest = payment.contestant.contest
    certification = receipt.certification
    results = reverse("voting:results-json", args=[contest.slug])
    return {
        "format": RECEIPT_FORMAT,
        "reference": payment.reference,
        "contest": {"slug": contest.slug, "name": contest.name},
        "certification": None
        if certification is None
        else {
            "number": certification.number,
            "root": certification.root,
            "entries": certification.entries,
            "certified_at": certification.certified_at.isoformat(),
        },
        "leaves": [
            {
                "entry": {
                    "reference": proven.reference,
                    "kind": proven.kind,
                    "votes": proven.votes,
                    "contestant": proven.contestant_id,
                },
                "index": proven.index,
                "leaf": proven.leaf.hex(),
                "path": [{"side": side, "hash": sibling.hex()} for side, sibling in proven.path],
            }
            for proven in receipt.proven
        ],
        "entries_after_certification": receipt.uncovered,
        "results": request.build_absolute_uri(results),
    }


def _contest_not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "voting/contest_not_found.html", status=404)
