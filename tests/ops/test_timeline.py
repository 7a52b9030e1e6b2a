"""The payment timeline: one page, everything that happened to a payment, in time order."""

import pytest
from django.urls import reverse

from ledger.models import OperatorAction
from ledger.operator_log import recorded
from ledger.services import open_dispute, settle_payment
from tests.factories import DeliveryFactory, PaymentFactory
from tests.helpers import success_for

pytestmark = pytest.mark.django_db


def timeline_url(reference: str) -> str:
    return reverse("payment-timeline", args=[reference])


def test_the_timeline_tells_a_payments_story_in_order_with_its_actions(admin_client):
    payment = PaymentFactory(votes=3)
    delivery = DeliveryFactory(payment=payment, status="failed", last_error="503 from the gateway")
    settle_payment(reference=payment.reference, verification=success_for(payment))
    open_dispute(reference=payment.reference, dispute_id="d-9", reminded=False)
    with recorded(action="replay", actor="ada", via=OperatorAction.Via.ADMIN) as record:
        record.touched(payments=[payment.reference], deliveries=[delivery.pk])

    page = admin_client.get(timeline_url(payment.reference))

    assert page.status_code == 200
    text = page.text
    steps = [
        "created: 3 vote(s)",
        "charge.success received",
        "credit +3 vote(s)",  # the entry, then the status change, in one transaction
        "pending → credited",
        "chargeback d-9 opened",
        "replay by ada (admin)",
    ]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions)
    assert reverse("admin:webhooks_delivery_replay", args=[delivery.pk]) in text


def test_a_flagged_payment_offers_resolve_on_its_timeline(admin_client):
    payment = PaymentFactory()
    settle_payment(reference=payment.reference, verification=success_for(payment, amount=1))

    page = admin_client.get(timeline_url(payment.reference))

    assert reverse("admin:ledger_payment_resolve", args=[payment.pk]) in page.text


@pytest.mark.parametrize("reference", ["tly-nosuch", "bad%00ref"])
def test_an_unknown_or_malformed_reference_is_404(admin_client, reference):
    assert admin_client.get(f"/ops/payments/{reference}/").status_code == 404


def test_only_staff_who_may_see_payments_read_it(client, django_user_model):
    payment = PaymentFactory()
    anonymous = client.get(timeline_url(payment.reference))
    staff = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    client.force_login(staff)
    without_permission = client.get(timeline_url(payment.reference))

    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert without_permission.status_code == 403
