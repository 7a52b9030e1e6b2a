"""Retention: old finished deliveries lose their bodies (rows and dedup stay); old payers'
emails become hashes; batched, safe to run twice, recorded."""

import hashlib
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from ledger.models import OperatorAction, Payment
from tasks import retention
from tasks.retention import prune_deliveries_daily
from tests.factories import DeliveryFactory, PaymentFactory
from tests.helpers import charge_success, event_bytes
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db

LONG_AGO = timezone.now() - timedelta(days=200)


def old(**fields) -> Delivery:
    return DeliveryFactory(received_at=LONG_AGO, **fields)


def test_old_finished_deliveries_lose_their_bodies_and_nothing_else_changes():
    pruned = old(status="processed", outcome="credited")
    unfinished = old(status="queued")
    recent = DeliveryFactory(status="processed")

    call_command("prune_deliveries", stdout=StringIO())

    pruned.refresh_from_db()
    assert (pruned.raw_body, pruned.payload, pruned.outcome) == ("", {}, "credited")
    assert pruned.pruned_at is not None
    assert pruned.dedup_key == Delivery.objects.get(pk=pruned.pk).dedup_key != ""
    for kept in (unfinished, recent):
        kept.refresh_from_db()
        assert kept.raw_body and kept.pruned_at is None


def test_a_late_duplicate_of_a_pruned_delivery_is_still_recognised(
    signed_post, enqueued, django_capture_on_commit_callbacks
):
    body = event_bytes(charge_success("tly-old0001", gateway_id=7001))
    with django_capture_on_commit_callbacks(execute=True):
        assert signed_post(body).json() == {"stored": True, "repeat": False}
    Delivery.objects.update(status="processed", received_at=LONG_AGO)
    call_command("prune_deliveries", stdout=StringIO())
    assert Delivery.objects.get().raw_body == ""

    with django_capture_on_commit_callbacks(execute=True):
        again = signed_post(body)

    assert again.json() == {"stored": True, "repeat": True}
    assert Delivery.objects.count() == 1
    assert Delivery.objects.get().delivery_count == 2
    assert len(enqueued) == 1


def test_old_payers_emails_become_hashes_and_recent_ones_stay():
    gone = PaymentFactory(email="Fan@Example.com")
    kept = PaymentFactory(email="recent@example.com")
    Payment.objects.filter(pk=gone.pk).update(created_at=LONG_AGO)

    call_command("prune_deliveries", stdout=StringIO())

    expected = "sha256:" + hashlib.sha256(b"fan@example.com").hexdigest()
    assert Payment.objects.get(pk=gone.pk).email == expected
    assert Payment.objects.get(pk=kept.pk).email == "recent@example.com"


def test_a_dry_run_counts_and_changes_nothing():
    old(status="processed")
    out = StringIO()

    call_command("prune_deliveries", "--dry-run", stdout=out)

    assert "dry run: 1 deliveries and 0 emails would be pruned; nothing changed" in out.getvalue()
    assert Delivery.objects.get().pruned_at is None


def test_batches_show_progress_and_a_second_run_prunes_nothing(monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 2)
    for _ in range(5):
        old(status="ignored")
    out = StringIO()

    call_command("prune_deliveries", "--older-than", "30d", stdout=out)
    call_command("prune_deliveries", "--older-than", "30d", stdout=out)

    lines = out.getvalue().splitlines()
    assert "prune_deliveries: 2 deliveries, 0 emails so far" in lines
    assert "prune_deliveries: 5 deliveries pruned, 0 emails replaced by a hash" in lines
    assert lines[-1] == "prune_deliveries: 0 deliveries pruned, 0 emails replaced by a hash"
    assert Delivery.objects.filter(pruned_at__isnull=False).count() == 5


def test_a_bad_window_exits_2():
    with pytest.raises(CommandError, match="--older-than: 'soon' is not a duration") as error:
        call_command("prune_deliveries", "--older-than", "soon")
    assert error.value.returncode == 2


def test_the_daily_job_prunes_and_is_recorded_as_beat(settings):
    settings.DELIVERY_RETENTION_DAYS = 90
    old(status="failed")

    assert prune_deliveries_daily() == {"deliveries": 1, "emails": 0}

    action = OperatorAction.objects.get()
    assert (action.action, action.actor, action.via, action.counts) == (
        "prune_deliveries",
        "beat",
        "beat",
        {"deliveries": 1, "emails": 0},
    )
    assert json.dumps(action.arguments)
