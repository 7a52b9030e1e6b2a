"""The delivery log is append-only in the admin: evidence, even from a superuser."""

import pytest
from django.urls import reverse

from tests.factories import DeliveryFactory
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:webhooks_delivery_changelist")


def test_a_superuser_cannot_delete_a_delivery(admin_client):
    delivery = DeliveryFactory()
    delete_url = reverse("admin:webhooks_delivery_delete", args=[delivery.pk])

    page = admin_client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk]))
    asked = admin_client.get(delete_url)
    confirmed = admin_client.post(delete_url, {"post": "yes"})

    assert page.status_code == 200
    assert delete_url not in page.text
    assert (asked.status_code, confirmed.status_code) == (403, 403)
    assert Delivery.objects.filter(pk=delivery.pk).exists()


def test_the_list_offers_no_bulk_delete_and_refuses_one_posted_anyway(admin_client):
    deliveries = [DeliveryFactory(), DeliveryFactory()]
    selected = {
        "action": "delete_selected",
        "_selected_action": [d.pk for d in deliveries],
        "post": "yes",
    }

    listing = admin_client.get(CHANGELIST)
    posted = admin_client.post(CHANGELIST, selected, follow=True)

    assert 'value="delete_selected"' not in listing.text
    assert 'value="replay_selected"' in listing.text  # the one action the log has
    assert posted.status_code == 200
    assert Delivery.objects.count() == 2
