"""The admin's Resolve page: a person decides about a payment that needs attention."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from ledger.models import Payment
from ledger.services import settle_payment
from tests.factories import PaymentFactory
from tests.helpers import success_for, votes_of

pytestmark = pytest.mark.django_db


def flagged(votes: int = 3) -> Payment:
    payment = PaymentFactory(votes=votes)
    settle_payment(reference=payment.reference, verification=success_for(payment, amount=1))
    return Payment.objects.get(pk=payment.pk)


def resolve_url(payment: Payment) -> str:
    return reverse("admin:ledger_payment_resolve", args=[payment.pk])


def test_the_payment_page_offers_resolve_and_a_decision_credits_with_who_and_why(admin_client):
    payment = flagged(votes=3)

    page = admin_client.get(reverse("admin:ledger_payment_change", args=[payment.pk]))
    form = admin_client.get(resolve_url(payment))
    done = admin_client.post(resolve_url(payment), {"decision": "credit", "note": "amount ok"})

    assert resolve_url(payment) in page.content.decode()
    assert b"Credit anyway" in form.content and b"Mark refunded" in form.content
    assert done.status_code == 302
    payment.refresh_from_db()
    assert (payment.status, payment.attention) == ("credited", "")
    assert votes_of(payment.contestant_id) == 3
    last = payment.transitions.latest("id")
    assert (last.actor, last.reason) == ("admin", "credit by admin: amount ok")


def test_a_decision_without_a_note_is_refused_and_changes_nothing(admin_client):
    payment = flagged()

    response = admin_client.post(resolve_url(payment), {"decision": "credit", "note": ""})

    assert response.status_code == 200
    assert b"This field is required" in response.content
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.FLAGGED


def test_staff_without_the_change_permission_cannot_resolve(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_payment"))
    client.force_login(viewer)
    payment = flagged()

    response = client.post(resolve_url(payment), {"decision": "credit", "note": "mine"})

    assert response.status_code == 403
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.FLAGGED
    assert votes_of(payment.contestant_id) == 0
