"""In a real browser: the person on call opens a payment's timeline in the admin and reads its
whole story on one page (docs/operations.md shows the screenshot this takes)."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from ledger.models import OperatorAction
from ledger.operator_log import recorded
from ledger.services import open_dispute, settle_payment
from tests.e2e import test_browser
from tests.e2e.test_browser import screenshot
from tests.factories import DeliveryFactory, PaymentFactory
from tests.helpers import success_for

pytestmark = pytest.mark.e2e
browser = test_browser.browser  # the headless Chromium fixture


def test_the_timeline_page_in_the_browser(
    browser, stack, sandbox, web, tmp_path, django_user_model
):
    payment = PaymentFactory(votes=3)
    DeliveryFactory(
        payment=payment,
        status="processed",
        outcome="credited",
        delivery_count=3,
        attempts=1,
        received_at=timezone.now() - timedelta(seconds=2),
        processed_at=timezone.now(),
    )
    settle_payment(reference=payment.reference, verification=success_for(payment))
    open_dispute(reference=payment.reference, dispute_id="4412", reminded=True)
    with recorded(action="replay", actor="ada", via=OperatorAction.Via.ADMIN) as record:
        record.touched(payments=[payment.reference])
        record.count({"replayed": 1, "already_processed": 1})
    # A staff session made here is a row in the shared database: the browser presents it.
    admin = django_user_model.objects.create_superuser("oncall", password="x")
    client = Client()
    client.force_login(admin)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value

    browser.get(f"{web}/healthz")
    browser.add_cookie({"name": django_settings.SESSION_COOKIE_NAME, "value": cookie})
    browser.get(f"{web}/ops/payments/{payment.reference}/")

    timeline = browser.find_element("id", "timeline").text
    assert "pending → credited" in timeline
    assert "chargeback 4412 opened" in timeline
    assert "replay by ada (admin)" in timeline
    refused = [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]
    assert refused == []
    screenshot(browser, tmp_path, "payment-timeline")
