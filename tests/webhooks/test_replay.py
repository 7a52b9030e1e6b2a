"""Replay: the service, the admin action and button, and `manage.py replay_events`."""

import re
from datetime import timedelta
from pathlib import Path
from unittest.mock import patch

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError

from ledger.models import LedgerEntry, Payment
from ledger.services import settle_payment
from tests.factories import DeliveryFactory, PaymentFactory
from tests.helpers import success_for, verify_answer, verify_url, votes_of
from webhooks.models import Delivery
from webhooks.services import replay_deliveries

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parents[2]
CHANGELIST = reverse("admin:webhooks_delivery_changelist")


def replay_url(delivery: Delivery) -> str:
    return reverse("admin:webhooks_delivery_replay", args=[delivery.pk])


def change_url(delivery: Delivery) -> str:
    return reverse("admin:webhooks_delivery_change", args=[delivery.pk])


def failed_delivery(payment: Payment, **fields: object) -> Delivery:
    """A charge.success that gave up while the gateway was down."""
    values = {
        "status": Delivery.Status.FAILED,
        "attempts": 9,
        "outcome": "gave up retrying",
        "last_error": "GET /transaction/verify: 503 Service Unavailable",
        "processed_at": timezone.now(),
        **fields,
    }
    return DeliveryFactory(payment=payment, **values)


def credited_payment() -> Payment:
    payment = PaymentFactory(votes=4)
    settle_payment(reference=payment.reference, verification=success_for(payment))
    return payment


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- the service -------------------------------------------------------------------------


def test_replay_requeues_keeping_history_and_enqueues_after_commit(
    settings, enqueued, django_capture_on_commit_callbacks
):
    settings.STUCK_AFTER_SECONDS = 60
    delivery = failed_delivery(PaymentFactory())

    with django_capture_on_commit_callbacks(execute=True):
        result = replay_deliveries(delivery_ids=[delivery.pk])
        assert enqueued == []  # never before the status change is committed

    assert enqueued == [delivery.pk]
    assert (result.replayed, result.skipped, result.already_processed) == (1, 0, 0)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.QUEUED
    assert delivery.attempts == 9
    assert delivery.last_error.startswith("GET /transaction/verify: 503")
    assert delivery.processed_at is None
    lease = (delivery.stale_after - timezone.now()).total_seconds()
    assert 50 < lease <= 60


def test_replay_skips_a_delivery_a_worker_holds_and_takes_one_whose_lease_expired(
    enqueued, django_capture_on_commit_callbacks
):
    now = timezone.now()
    held = DeliveryFactory(status="processing", stale_after=now + timedelta(seconds=30))
    abandoned = DeliveryFactory(status="processing", stale_after=now - timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        result = replay_deliveries(delivery_ids=[held.pk, abandoned.pk])

    assert result.skipped_ids == (held.pk,)
    assert result.replayed_ids == (abandoned.pk,)
    assert enqueued == [abandoned.pk]
    assert Delivery.objects.get(pk=held.pk).status == Delivery.Status.PROCESSING
    assert Delivery.objects.get(pk=abandoned.pk).status == Delivery.Status.QUEUED


def test_replay_counts_the_already_processed_and_the_missing(enqueued):
    processed = DeliveryFactory(status="processed", processed_at=timezone.now())
    failed = DeliveryFactory(status="failed")

    result = replay_deliveries(delivery_ids=[processed.pk, failed.pk, 999_999_999])

    assert (result.replayed, result.already_processed, result.missing) == (2, 1, 1)


@pytest.mark.django_db(transaction=True)
def test_replay_reports_deliveries_the_broker_refused_and_leaves_them_for_the_sweeper():
    delivery = DeliveryFactory(status="failed")
    refuse = BrokerOperationalError("Connection refused")

    with patch("tasks.deliveries.process_deliveries.delay", side_effect=refuse):
        result = replay_deliveries(delivery_ids=[delivery.pk])

    assert (result.replayed, result.sent, result.refused_by_broker) == (1, 0, 1)
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.RECEIVED


# --- the admin ---------------------------------------------------------------------------


def test_admin_replay_action_settles_a_failed_delivery_once_the_gateway_is_back(
    admin_client, paystack, tasks_run_eagerly, django_capture_on_commit_callbacks
):
    payment = PaymentFactory(votes=5)
    delivery = failed_delivery(payment)
    paystack.get(verify_url(payment.reference), json=verify_answer(payment))
    selected = {"action": "replay_selected", "_selected_action": [delivery.pk]}

    listing = admin_client.get(CHANGELIST)
    asked = admin_client.post(CHANGELIST, {**selected, "index": 0})

    assert 'value="replay_selected"' in listing.text
    assert asked.status_code == 200
    assert "admin/webhooks/delivery/replay_confirmation.html" in [t.name for t in asked.templates]
    assert payment.reference in asked.text
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.FAILED  # only asked

    with django_capture_on_commit_callbacks(execute=True):
        confirmed = admin_client.post(CHANGELIST, {**selected, "post": "yes"}, follow=True)

    assert confirmed.redirect_chain[-1][0].endswith(CHANGELIST)
    assert messages_of(confirmed) == ["Replayed 1 delivery."]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.outcome) == (Delivery.Status.PROCESSED, "credited")
    assert delivery.attempts == 10
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CREDITED
    assert votes_of(payment.contestant_id) == 5
    assert list(LedgerEntry.objects.values_list("payment_id", "kind", "votes")) == [
        (payment.pk, "credit", 5)
    ]
    assert len(paystack.calls) == 1


def test_admin_replay_button_asks_then_replays_and_returns_to_the_delivery(
    admin_client, paystack, tasks_run_eagerly, django_capture_on_commit_callbacks
):
    payment = PaymentFactory(votes=2)
    delivery = failed_delivery(payment)
    paystack.get(verify_url(payment.reference), json=verify_answer(payment))

    page = admin_client.get(change_url(delivery))
    asked = admin_client.get(replay_url(delivery))
    with django_capture_on_commit_callbacks(execute=True):
        confirmed = admin_client.post(replay_url(delivery), {"post": "yes"})

    assert page.status_code == 200
    assert replay_url(delivery) in page.text
    assert asked.status_code == 200
    assert Delivery.objects.get(pk=delivery.pk).status != Delivery.Status.FAILED
    assert confirmed.status_code == 302
    assert confirmed.url == change_url(delivery)
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.CREDITED
    assert votes_of(payment.contestant_id) == 2


def test_replaying_a_processed_delivery_changes_no_totals_and_calls_no_gateway(
    admin_client, paystack, tasks_run_eagerly, django_capture_on_commit_callbacks
):
    payment = credited_payment()
    delivery = DeliveryFactory(
        payment=payment, status="processed", outcome="credited", processed_at=timezone.now()
    )
    selected = {"action": "replay_selected", "_selected_action": [delivery.pk], "post": "yes"}

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(CHANGELIST, selected, follow=True)

    assert messages_of(response) == [
        "Replayed 1 delivery (1 already processed: replaying it changes nothing)."
    ]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.outcome) == (Delivery.Status.PROCESSED, "already_settled")
    assert votes_of(payment.contestant_id) == 4
    assert LedgerEntry.objects.filter(payment=payment).count() == 1
    assert len(paystack.calls) == 0
    call_command("check_ledger")


def test_admin_says_what_it_skipped(admin_client, enqueued, django_capture_on_commit_callbacks):
    now = timezone.now()
    failed = DeliveryFactory(status="failed")
    processed = DeliveryFactory(status="processed")
    held = DeliveryFactory(status="processing", stale_after=now + timedelta(seconds=30))
    ids = [failed.pk, processed.pk, held.pk]
    selected = {"action": "replay_selected", "_selected_action": ids}

    asked = admin_client.post(CHANGELIST, {**selected, "index": 0})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(CHANGELIST, {**selected, "post": "yes"}, follow=True)

    assert "skipped: in progress" in asked.text
    assert messages_of(response) == [
        "Replayed 2 deliveries (1 already processed: replaying it changes nothing)."
        " Skipped 1 in progress."
    ]
    assert sorted(enqueued) == [failed.pk, processed.pk]


@pytest.fixture
def non_staff_client(client, django_user_model):
    user = django_user_model.objects.create_user("voter", password="x", is_staff=False)
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(client, django_user_model):
    """Staff who may look at deliveries but not change them."""
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    client.force_login(user)
    return client


def test_a_non_staff_user_is_sent_to_login_and_nothing_changes(non_staff_client, enqueued):
    delivery = failed_delivery(PaymentFactory())
    selected = {"action": "replay_selected", "_selected_action": [delivery.pk], "post": "yes"}

    responses = [
        non_staff_client.post(CHANGELIST, selected),
        non_staff_client.get(replay_url(delivery)),
        non_staff_client.post(replay_url(delivery), {"post": "yes"}),
    ]

    for response in responses:
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.FAILED
    assert enqueued == []


def test_staff_without_the_change_permission_cannot_replay(viewer_client, enqueued):
    delivery = failed_delivery(PaymentFactory())
    selected = {"action": "replay_selected", "_selected_action": [delivery.pk], "post": "yes"}

    page = viewer_client.get(change_url(delivery))
    listing = viewer_client.get(CHANGELIST)
    action = viewer_client.post(CHANGELIST, selected, follow=True)
    button = viewer_client.post(replay_url(delivery), {"post": "yes"})

    assert page.status_code == 200
    assert replay_url(delivery) not in page.text
    assert 'value="replay_selected"' not in listing.text
    assert action.status_code == 200  # no action is offered, so none runs
    assert messages_of(action) == []
    assert button.status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.FAILED
    assert enqueued == []


def test_the_delivery_page_links_its_payment_and_shows_the_body(admin_client):
    payment = PaymentFactory()
    delivery = DeliveryFactory(
        payment=payment, raw_body='{"event":"charge.success","data":{"name":"Adébáyọ̀"}}'
    )
    stranger = DeliveryFactory(reference="trf_not_ours")

    page = admin_client.get(change_url(delivery))
    other = admin_client.get(change_url(stranger))

    payment_url = reverse("admin:ledger_payment_change", args=[payment.pk])
    assert f"href='{payment_url}'" in page.text
    assert "Adébáyọ̀" in page.text
    assert other.status_code == 200
    assert not re.search(r"/admin/ledger/payment/\d+/change/", other.text)


# --- the command -------------------------------------------------------------------------


def test_dry_run_lists_what_it_would_replay_and_changes_nothing(capsys, enqueued):
    failed = DeliveryFactory(status="failed", reference="tly-dry000001")
    DeliveryFactory(status="processed", reference="tly-dry000002")
    before = list(Delivery.objects.order_by("pk").values_list("status", "stale_after"))

    call_command("replay_events", dry_run=True)

    out = capsys.readouterr().out
    assert f"{failed.pk}  charge.success  tly-dry000001  failed" in out
    assert "tly-dry000002" not in out
    assert out.rstrip().endswith(
        "replay_events: dry run, 1 matched, 1 would be replayed (0 already processed), "
        "0 would be skipped (in progress); nothing changed"
    )
    assert list(Delivery.objects.order_by("pk").values_list("status", "stale_after")) == before
    assert enqueued == []


def test_a_real_run_replays_the_failed_deliveries_and_summarises(
    capsys, enqueued, django_capture_on_commit_callbacks
):
    failed = [DeliveryFactory(status="failed") for _ in range(3)]
    untouched = DeliveryFactory(status="ignored")

    with django_capture_on_commit_callbacks(execute=True):
        call_command("replay_events")

    assert sorted(enqueued) == [d.pk for d in failed]
    assert set(Delivery.objects.filter(pk__in=enqueued).values_list("status", flat=True)) == {
        "queued"
    }
    assert Delivery.objects.get(pk=untouched.pk).status == Delivery.Status.IGNORED
    assert capsys.readouterr().out.strip() == (
        "replay_events: 3 matched, 3 replayed (0 were already processed), 0 skipped (in progress)"
    )


def test_processed_and_in_progress_deliveries_are_counted_in_the_summary(
    capsys, enqueued, django_capture_on_commit_callbacks
):
    DeliveryFactory(status="processed")
    DeliveryFactory(status="processing", stale_after=timezone.now() + timedelta(seconds=30))

    with django_capture_on_commit_callbacks(execute=True):
        call_command("replay_events", status="processed")
        call_command("replay_events", status="processing")

    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        "replay_events: 1 matched, 1 replayed (1 were already processed), 0 skipped (in progress)",
        "replay_events: 1 matched, 0 replayed (0 were already processed), 1 skipped (in progress)",
    ]
    assert len(enqueued) == 1


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"event": "refund.processed"}, {"refund"}),
        ({"reference": "tly-filter0001"}, {"charge-mine"}),
        ({"status": "ignored"}, {"ignored"}),
        ({"since": "2h"}, {"charge-mine", "refund"}),
        ({"since": "2h", "event": "charge.success"}, {"charge-mine"}),
        ({}, {"charge-mine", "refund", "charge-old"}),
    ],
)
def test_filters_select_the_right_deliveries(
    options, expected, enqueued, django_capture_on_commit_callbacks
):
    now = timezone.now()
    named = {
        "charge-mine": DeliveryFactory(status="failed", reference="tly-filter0001"),
        "refund": DeliveryFactory(
            status="failed", event="refund.processed", reference="tly-filter0002"
        ),
        "charge-old": DeliveryFactory(
            status="failed", reference="tly-filter0003", received_at=now - timedelta(hours=3)
        ),
        "ignored": DeliveryFactory(status="ignored", event="transfer.success"),
    }

    with django_capture_on_commit_callbacks(execute=True):
        call_command("replay_events", **options)

    assert {name for name, d in named.items() if d.pk in enqueued} == expected


def test_long_runs_print_progress_every_500(capsys, enqueued, django_capture_on_commit_callbacks):
    Delivery.objects.bulk_create(DeliveryFactory.build_batch(1001, status="failed"))

    with django_capture_on_commit_callbacks(execute=True):
        call_command("replay_events")

    assert capsys.readouterr().out.strip().splitlines() == [
        "replay_events: 500/1001 done",
        "replay_events: 1000/1001 done",
        "replay_events: 1001/1001 done",
        "replay_events: 1001 matched, 1001 replayed (0 were already processed), "
        "0 skipped (in progress)",
    ]
    assert len(enqueued) == 1001


@pytest.mark.django_db(transaction=True)
def test_a_run_says_when_the_broker_refused(capsys):
    DeliveryFactory(status="failed")
    refuse = BrokerOperationalError("Connection refused")

    with patch("tasks.deliveries.process_deliveries.delay", side_effect=refuse):
        call_command("replay_events")

    assert "the broker refused 1: left as received" in capsys.readouterr().out
    assert Delivery.objects.get().status == Delivery.Status.RECEIVED


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"since": "soon"}, "--since: 'soon' is not a duration"),
        ({"since": "0m"}, "--since: '0m' is an empty window"),
        ({"since": "999999999d"}, "--since: '999999999d' reaches back"),
        ({"status": "lost"}, "--status 'lost' is not a delivery status"),
    ],
)
def test_bad_arguments_raise_command_error_with_returncode_2(options, message, enqueued):
    DeliveryFactory(status="failed")

    with pytest.raises(CommandError, match=message) as error:
        call_command("replay_events", **options)

    assert error.value.returncode == 2
    assert Delivery.objects.get().status == Delivery.Status.FAILED
    assert enqueued == []
