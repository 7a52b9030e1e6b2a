"""Several contests at once: the contests API, each contest's contestants, the home page and
each contest's page with its leaderboard (docs/contract.md, HTTP)."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from ledger.models import Payment
from ledger.services import certify_contest, settle_payment
from tests.factories import ContestantFactory, ContestFactory
from tests.helpers import success_for, votes_of
from voting.board import Line, board_of, share

pytestmark = pytest.mark.django_db


@pytest.fixture
def contests():
    """One contest of each status, created out of listing order."""
    now = timezone.now()
    day = timedelta(days=1)
    closed = ContestFactory(slug="closed", opens_at=now - 5 * day, closes_at=now - 2 * day)
    later = ContestFactory(slug="later", opens_at=now + 2 * day, closes_at=now + 3 * day)
    certified = ContestFactory(slug="certified", opens_at=now - 9 * day, closes_at=now - 3 * day)
    late_closing = ContestFactory(slug="late", opens_at=now - day, closes_at=now + 2 * day)
    soon = ContestFactory(slug="soon", opens_at=now + day, closes_at=now + 3 * day)
    early_closing = ContestFactory(
        slug="early", opens_at=now - day, closes_at=now + day, price_per_vote=2500, currency="GHS"
    )
    certify_contest(contest_id=certified.pk)
    return {c.slug: c for c in (closed, later, certified, late_closing, soon, early_closing)}


def order(client: Client, contestant, votes: int, email: str = "fan@example.com"):
    body = json.dumps({"contestant": contestant.id, "votes": votes, "email": email})
    return client.post("/api/payments/", data=body, content_type="application/json")


# --- GET /api/contests/ ---------------------------------------------------------------------


def test_contests_lists_every_contest_open_first_then_upcoming_then_closed(contests):
    response = Client().get("/api/contests/")

    assert response.status_code == 200
    listed = response.json()["contests"]
    assert [(c["slug"], c["status"]) for c in listed] == [
        ("early", "open"),
        ("late", "open"),
        ("soon", "upcoming"),
        ("later", "upcoming"),
        ("closed", "closed"),
        ("certified", "certified"),
    ]
    early = contests["early"]
    assert listed[0] == {
        "slug": "early",
        "name": early.name,
        "opens_at": early.opens_at.isoformat(),
        "closes_at": early.closes_at.isoformat(),
        "price_per_vote": 2500,
        "currency": "GHS",
        "status": "open",
    }
    assert "no-cache" in response["Cache-Control"]


def test_contests_is_an_empty_list_without_contests():
    assert Client().get("/api/contests/").json() == {"contests": []}


# --- GET /api/contests/<slug>/contestants/ ----------------------------------------------------


def test_two_contests_open_at_once_take_payments_and_keep_their_own_totals(initialize_ok):
    first = ContestFactory(slug="first", price_per_vote=5000)
    second = ContestFactory(
        slug="second", price_per_vote=2000, closes_at=timezone.now() + timedelta(days=3)
    )
    ada = ContestantFactory(contest=first, name="Ada", slug="ada")
    ife = ContestantFactory(contest=second, name="Ife", slug="ife")
    kemi = ContestantFactory(contest=second, name="Kemi", slug="kemi")
    client = Client()

    answers = [order(client, ada, 3), order(client, ife, 2), order(client, kemi, 5)]
    for answer in answers:
        assert answer.status_code == 201
        payment = Payment.objects.get(reference=answer.json()["reference"])
        settle_payment(reference=payment.reference, verification=success_for(payment))

    # Each contest's price and currency; the contestant id picked the contest.
    assert [a.json()["amount"] for a in answers] == [3 * 5000, 2 * 2000, 5 * 2000]
    assert [votes_of(c.pk) for c in (ada, ife, kemi)] == [3, 2, 5]
    assert client.get("/api/contests/first/contestants/").json() == {
        "contestants": [
            {"id": ada.id, "name": "Ada", "slug": "ada", "votes": 3, "votes_under_dispute": 0}
        ]
    }
    second_totals = client.get("/api/contests/second/contestants/").json()["contestants"]
    assert [(c["slug"], c["votes"]) for c in second_totals] == [("ife", 2), ("kemi", 5)]
    statuses = {c["slug"]: c["status"] for c in client.get("/api/contests/").json()["contests"]}
    assert statuses == {"first": "open", "second": "open"}
    # The single-contest API keeps answering for the open contest that closes first.
    legacy = client.get("/api/contestants/").json()["contestants"]
    assert [(c["id"], c["votes"]) for c in legacy] == [(ada.id, 3)]


def test_contestants_of_a_closed_or_certified_contest_are_still_served(contests):
    ContestantFactory(contest=contests["certified"], name="Zed", slug="zed")

    response = Client().get("/api/contests/certified/contestants/")

    assert response.status_code == 200
    assert [c["slug"] for c in response.json()["contestants"]] == ["zed"]


@pytest.mark.parametrize("slug", ["nope", "no-such-contest"])
def test_contestants_of_an_unknown_contest_is_a_json_404(slug):
    response = Client().get(f"/api/contests/{slug}/contestants/")

    assert response.status_code == 404
    assert response.json() == {"error": "unknown contest"}


def test_a_slug_outside_the_slug_alphabet_is_a_404_not_a_500():
    for path in ("/api/contests/a%00b/contestants/", "/c/a.b/", "/results/%F0%9F%8E%89/"):
        assert Client().get(path).status_code == 404


def test_the_contest_api_answers_get_only():
    ContestFactory(slug="only")

    assert Client().post("/api/contests/").status_code == 405
    assert Client().post("/api/contests/only/contestants/").status_code == 405


# --- pages ------------------------------------------------------------------------------------


def test_home_lists_open_then_upcoming_then_closed_contests_with_links(contests):
    html = Client().get("/").content.decode()

    positions = [html.index(f'id="contest-{slug}"') for slug in contests]
    assert sorted(positions) == [
        html.index(f'id="contest-{slug}"')
        for slug in ("early", "late", "soon", "later", "closed", "certified")
    ]
    assert html.index("Open now") < html.index("Coming up") < html.index("Closed")
    assert 'href="/c/early/"' in html
    assert "25.00 GHS a vote" in html
    assert 'href="/results/certified/"' in html  # closed and certified: its results
    assert 'href="/results/closed/"' not in html  # closed, not certified yet
    assert "the result is being certified" in html


def test_home_says_so_when_there_is_no_contest():
    html = Client().get("/").content.decode()

    assert "No contests yet" in html


def test_the_contest_page_ranks_contestants_with_bars_of_their_share():
    contest = ContestFactory(slug="finale")
    ada = ContestantFactory(contest=contest, name="Ada", votes=1)
    bola = ContestantFactory(contest=contest, name="Bola", votes=3)

    html = Client().get("/c/finale/").content.decode()

    assert html.index(f'id="line-{bola.id}"') < html.index(f'id="line-{ada.id}"')
    assert f'<span id="votes-{bola.id}">3</span>' in html
    assert f'id="share-{bola.id}">75.0%<' in html
    assert f'id="share-{ada.id}">25.0%<' in html
    assert f'<meter id="bar-{bola.id}" min="0" max="4" value="3"' in html
    assert f'id="rank-{bola.id}" data-rank="1"' in html
    assert '<span id="board-total">4</span>' in html
    assert 'class="live"' in html  # open: the page polls for live totals


def test_an_upcoming_contest_has_no_form_and_does_not_poll():
    contestant = ContestantFactory(
        contest__opens_at=timezone.now() + timedelta(days=1),
        contest__closes_at=timezone.now() + timedelta(days=2),
    )

    html = Client().get(f"/c/{contestant.contest.slug}/").content.decode()

    assert "voting opens" in html
    assert 'id="buy"' not in html
    assert 'data-live="1"' not in html


def test_a_certified_contest_links_its_result_and_no_longer_polls(contests):
    html = Client().get("/c/certified/").content.decode()

    assert 'href="/results/certified/"' in html
    assert 'data-live="1"' not in html
    assert 'id="buy"' not in html


def test_an_unknown_contest_page_is_404():
    response = Client().get("/c/nope/")

    assert response.status_code == 404
    assert b"We don't know this contest" in response.content


@pytest.mark.parametrize(
    ("votes", "total", "shown"),
    [(0, 0, "0.0%"), (1, 3, "33.3%"), (2, 3, "66.6%"), (3, 3, "100.0%"), (1, 8, "12.5%")],
)
def test_shares_are_tenths_of_a_percent_rounded_down(votes, total, shown):
    assert share(votes, total) == shown


def test_ties_share_a_rank():
    lines = [
        Line(id=n, name=str(n), slug=str(n), votes=v, votes_under_dispute=0)
        for n, v in enumerate([5, 9, 5, 1])
    ]

    board = board_of(lines)

    assert [(r.line.id, r.rank) for r in board.lines] == [(1, 1), (0, 2), (2, 2), (3, 4)]
    assert board.total == 20
