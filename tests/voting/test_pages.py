"""The voting page and the payment status page."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from ledger.models import Payment
from ledger.services import settle_payment
from tests.factories import ContestantFactory, ContestFactory, PaymentFactory
from tests.helpers import success_for
from voting.pages import format_amount

pytestmark = pytest.mark.django_db


def test_contest_page_shows_live_totals_and_the_form_to_buy_votes():
    contest = ContestFactory(name="Star Search", price_per_vote=5000)
    ada = ContestantFactory(contest=contest, name="Ada", votes=12)
    bola = ContestantFactory(contest=contest, name="Bola", votes=0)

    response = Client().get(f"/c/{contest.slug}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="en">' in html
    assert "<main" in html
    assert "Star Search" in html
    assert "₦50.00" in html  # the price per vote
    assert f'<span id="votes-{ada.id}">12</span>' in html
    assert f'<span id="votes-{bola.id}">0</span>' in html
    for element_id in ('id="contestant"', 'id="votes"', 'id="email"', 'id="buy"'):
        assert element_id in html
    assert 'id="error" class="error" role="alert"' in html
    assert f'<option value="{ada.id}">Ada</option>' in html
    for label in ('for="contestant"', 'for="votes"', 'for="email"'):
        assert label in html
    assert 'min="1" max="1000"' in html
    assert f'data-api="/api/contests/{contest.slug}/contestants/"' in html  # the live poll
    assert 'data-live="1"' in html
    assert "/api/payments/" in html  # where the form posts


def test_contest_page_escapes_names():
    contestant = ContestantFactory(name="<script>alert(1)</script>")

    html = Client().get(f"/c/{contestant.contest.slug}/").content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_closed_contest_shows_its_totals_but_no_form_to_buy_votes():
    contestant = ContestantFactory(contest__closes_at=timezone.now() - timedelta(hours=1))

    response = Client().get(f"/c/{contestant.contest.slug}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "voting closed" in html and "the result is being certified" in html
    assert f'id="votes-{contestant.id}"' in html
    assert 'id="buy"' not in html


def test_status_page_of_a_pending_payment_polls_the_api():
    payment = PaymentFactory(votes=3, contestant__name="Ada")

    response = Client().get(f"/payments/{payment.reference}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Ada" in html
    assert "₦150.00" in html
    assert 'data-status="pending"' in html
    assert 'id="payment-status"' in html
    assert f'data-api="/api/payments/{payment.reference}/"' in html
    assert "setTimeout(poll" in html
    assert f'href="/c/{payment.contestant.contest.slug}/"' in html  # back to its contest
    assert "no-cache" in response["Cache-Control"]


def test_status_page_shows_credited_once_the_worker_settles_it():
    payment = PaymentFactory(votes=2)
    settle_payment(reference=payment.reference, verification=success_for(payment))

    response = Client().get(f"/payments/{payment.reference}/")

    html = response.content.decode()
    assert 'data-status="credited"' in html
    assert "credited: your votes have been counted" in html
    assert "setTimeout(poll" not in html  # settled: nothing left to follow
    assert Client().get(f"/api/payments/{payment.reference}/").json()["status"] == "credited"


def test_status_page_shows_other_currencies_after_the_number():
    payment = PaymentFactory(votes=3, currency="GHS", amount=15000)

    html = Client().get(f"/payments/{payment.reference}/").content.decode()

    assert "150.00 GHS" in html


def test_status_page_of_an_unknown_reference_is_404():
    response = Client().get("/payments/tly-nosuchthing/")

    assert response.status_code == 404
    assert b"tly-nosuchthing" in response.content


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (15000, "NGN", "₦150.00"),
        (5, "NGN", "₦0.05"),
        (150000000, "NGN", "₦1,500,000.00"),
        (15099, "GHS", "150.99 GHS"),
    ],
)
def test_format_amount_uses_major_units_without_floats(amount, currency, shown):
    assert format_amount(amount, currency) == shown


def test_every_status_has_words():
    for status in Payment.Status:
        payment = PaymentFactory(status=status, credited_at=timezone.now())

        html = Client().get(f"/payments/{payment.reference}/").content.decode()

        assert f'data-status="{status}"' in html
        assert f">{status}:" in html


@pytest.mark.parametrize("path", ["/", "/payments/tly-nosuchthing/"])
def test_every_page_says_test_payments_when_the_gateway_is_the_sandbox(settings, path):
    ContestantFactory()
    settings.TALLY_SANDBOX = True

    sandbox = Client().get(path).content.decode()
    settings.TALLY_SANDBOX = False
    real = Client().get(path).content.decode()

    assert "Test payments, no real money" in sandbox
    assert 'id="sandbox-banner"' not in real
