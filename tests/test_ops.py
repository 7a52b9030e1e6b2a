"""Operations: health and readiness, /metrics, the reconcile command, and what logs carry."""

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import responses
from celery import current_app
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from config.logging import JsonFormatter, RedactSecrets
from config.metrics import webhook_deliveries
from ledger.models import Payment
from tasks.deliveries import process_delivery
from tasks.reconcile import reconcile_payments
from tests.factories import DeliveryFactory, PaymentFactory
from tests.helpers import charge_success, event_bytes, verify_answer, verify_url, votes_of
from webhooks.models import Delivery

REPO = Path(__file__).resolve().parents[1]
CLOSED_PORT = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once
NOT_FOUND = {"status": False, "message": "Transaction reference not found."}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client) -> Samples:
    """GET /metrics and parse it as Prometheus does: {(sample name, labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def counted(name: str, **labels: str) -> float:
    """A counter's value in this process (0 before its first increment)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def says(paystack, payment: Payment, **changes: object) -> None:
    """The gateway's verify answer for this payment: paid, unless `changes` say otherwise."""
    paystack.add(
        responses.GET, verify_url(payment.reference), json=verify_answer(payment, **changes)
    )


def created_ago(payment: Payment, age: timedelta) -> Payment:
    """created_at is auto_now_add: move it back with an UPDATE."""
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - age)
    payment.refresh_from_db()
    return payment


# --- health and readiness ----------------------------------------------------------------


def test_healthz_answers_200_without_asking_anyone(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_200_when_postgresql_and_the_broker_answer(client, broker):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"postgresql": "ok", "broker": "ok"},
        "failing": [],
    }


@pytest.mark.django_db
def test_readyz_is_503_naming_redis_when_only_redis_is_down(client, settings):
    settings.REDIS_URL = CLOSED_PORT  # the broker stays where it was

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["redis"]
    assert body["checks"]["postgresql"] == body["checks"]["broker"] == "ok"
    assert "ConnectionError" in body["checks"]["redis"]


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broker_when_it_is_down(client, settings):
    settings.CELERY_BROKER_URL = CLOSED_PORT

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["broker"]
    assert body["checks"]["redis"] == "ok"


@pytest.mark.django_db
def test_readyz_is_503_naming_postgresql_when_the_database_is_unreachable(
    client, broker, monkeypatch
):
    # The check runs on its own thread with its own connection, made from this same dict:
    # point it at a closed port (this thread's open connection is not touched).
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["postgresql"]
    assert "OperationalError" in body["checks"]["postgresql"]
    assert body["checks"]["broker"] == "ok"


# --- /metrics ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_metrics_count_webhook_outcomes_and_show_deliveries_and_queue_now(
    client, signed_post, broker
):
    before = scrape(client)

    assert signed_post(event_bytes(charge_success("tly-metrics0001"))).status_code == 200
    assert signed_post(event_bytes(charge_success("tly-metrics0002"))).status_code == 200
    assert signed_post(event_bytes(charge_success("tly-metrics0001"))).status_code == 200
    forged = signed_post(event_bytes(charge_success("tly-metrics0003")), key="sk_test_forged")
    assert forged.status_code == 401

    after = scrape(client)
    waiting = broker.llen("celery")

    def delta(**labels: str) -> float:
        name = "tally_webhook_deliveries_total"
        return (sample(after, name, **labels) or 0) - (sample(before, name, **labels) or 0)

    assert delta(event="charge.success", outcome="new") == 2
    assert delta(event="charge.success", outcome="repeat") == 1
    # An unsigned body is not trusted even for its event type: the label stays empty.
    assert delta(event="", outcome="rejected_401") == 1
    assert sample(after, "tally_deliveries", status="queued") == 2
    for status in ("received", "processing", "processed", "ignored", "failed"):
        assert sample(after, "tally_deliveries", status=status) == 0
    assert waiting == 2  # one message per new delivery, none for the repeat
    assert sample(after, "tally_queue_depth", queue="celery") == waiting


@pytest.mark.django_db
def test_oldest_unprocessed_age_rises_for_a_stuck_delivery_and_ignores_finished_ones(
    client, broker
):
    DeliveryFactory(
        status=Delivery.Status.PROCESSED, received_at=timezone.now() - timedelta(days=1)
    )
    assert sample(scrape(client), "tally_oldest_unprocessed_delivery_age_seconds") == 0

    DeliveryFactory(received_at=timezone.now() - timedelta(minutes=10))  # queued
    age = sample(scrape(client), "tally_oldest_unprocessed_delivery_age_seconds")

    assert 600 <= age < 660


@pytest.mark.django_db
def test_an_unreachable_broker_skips_queue_depth_and_the_scrape_still_succeeds(
    client, monkeypatch, caplog
):
    monkeypatch.setattr(current_app.conf, "broker_url", CLOSED_PORT)
    DeliveryFactory()

    with caplog.at_level(logging.WARNING, logger="ops.metrics"):
        samples = scrape(client)

    assert not [key for key in samples if key[0] == "tally_queue_depth"]
    assert sample(samples, "tally_deliveries", status="queued") == 1
    assert sample(samples, "tally_votes_credited_total") is not None  # counters still there
    warning = next(r for r in caplog.records if r.name == "ops.metrics")
    assert warning.queue == "celery"
    assert "127.0.0.1:1" in warning.error


def _count_in_another_process(directory: Path, times: int) -> None:
    code = (
        "from config.metrics import gateway_verify_seconds, webhook_deliveries\n"
        f"webhook_deliveries.labels('charge.success', 'mp-test').inc({times})\n"
        "gateway_verify_seconds.labels('mp-test').observe(0.2)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        check=True,
        timeout=60,
    )


@pytest.mark.django_db
def test_multiprocess_mode_adds_up_the_counts_of_every_process(
    client, broker, tmp_path, monkeypatch
):
    _count_in_another_process(tmp_path, times=2)
    _count_in_another_process(tmp_path, times=3)
    # This process counts in memory (it started without the variable): a multiprocess scrape
    # must not show it, only what the files in the directory say.
    webhook_deliveries.labels("charge.success", "mp-test").inc(100)
    DeliveryFactory()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    samples = scrape(client)

    labels = {"event": "charge.success", "outcome": "mp-test"}
    assert sample(samples, "tally_webhook_deliveries_total", **labels) == 5
    assert sample(samples, "tally_gateway_verify_seconds_count", outcome="mp-test") == 2
    assert sample(samples, "tally_deliveries", status="queued") == 1  # live gauges too


def test_a_multiprocess_directory_that_does_not_exist_fails_at_start_naming_it(tmp_path):
    missing = tmp_path / "not-created"
    result = subprocess.run(
        [sys.executable, "-c", "import config.metrics"],
        cwd=REPO,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(missing)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert f"PROMETHEUS_MULTIPROC_DIR='{missing}' is not a directory" in result.stderr


# --- reconcile ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_reconcile_dry_run_lists_what_it_would_verify_and_changes_nothing(paystack, capsys):
    pending = PaymentFactory(amount=15000)
    PaymentFactory(status=Payment.Status.FAILED)
    just_verified = PaymentFactory(verified_at=timezone.now() - timedelta(seconds=10))

    call_command("reconcile", dry_run=True)

    out = capsys.readouterr().out
    assert f"{pending.reference}  " in out
    assert "  15000 NGN" in out
    assert f"{just_verified.reference}  " in out and "(skip: verified at" in out
    assert (
        "reconcile --dry-run: would check 1 pending payment(s); 1 verified in the last minute "
        "would be skipped; nothing was verified or changed"
    ) in out
    assert len(paystack.calls) == 0
    assert Payment.objects.get(pk=pending.pk).verified_at is None
    assert Payment.objects.filter(status=Payment.Status.PENDING).count() == 2


@pytest.mark.django_db
def test_reconcile_settles_pending_payments_and_prints_the_summary(paystack, capsys):
    paid = PaymentFactory(votes=4)
    abandoned, failed, unknown = PaymentFactory(), PaymentFactory(), PaymentFactory()
    says(paystack, paid)
    says(paystack, abandoned, status="abandoned")
    says(paystack, failed, status="failed")
    paystack.add(responses.GET, verify_url(unknown.reference), status=404, json=NOT_FOUND)
    credited_before = counted("tally_payments_settled_total", outcome="credited")
    votes_before = counted("tally_votes_credited_total")
    verified_before = counted("tally_gateway_verify_seconds_count", outcome="success")

    call_command("reconcile")

    out = capsys.readouterr().out
    assert "reconcile: 4 pending payment(s); verifying" in out
    assert "reconcile: 4 checked: credited 1, failed 1, not_found 1, still_pending 1" in out
    statuses = dict(Payment.objects.values_list("reference", "status"))
    assert statuses == {
        paid.reference: "credited",
        abandoned.reference: "pending",
        failed.reference: "failed",
        unknown.reference: "pending",
    }
    assert votes_of(paid.contestant_id) == 4
    assert counted("tally_payments_settled_total", outcome="credited") == credited_before + 1
    assert counted("tally_votes_credited_total") == votes_before + 4
    assert counted("tally_gateway_verify_seconds_count", outcome="success") == verified_before + 1


@pytest.mark.django_db
def test_reconcile_since_takes_only_payments_created_within_the_window(paystack, capsys):
    recent = PaymentFactory()
    old = created_ago(PaymentFactory(), timedelta(days=3))
    says(paystack, recent)
    says(paystack, old)

    call_command("reconcile", since="2d")

    assert "reconcile: 1 checked: credited 1" in capsys.readouterr().out
    assert Payment.objects.get(pk=recent.pk).status == Payment.Status.CREDITED
    assert Payment.objects.get(pk=old.pk).status == Payment.Status.PENDING
    assert [call.request.url for call in paystack.calls] == [verify_url(recent.reference)]


@pytest.mark.django_db
def test_reconcile_prints_progress_on_long_runs(paystack, capsys, monkeypatch):
    monkeypatch.setattr("tasks.management.commands.reconcile.PROGRESS_EVERY", 2)
    for payment in [PaymentFactory() for _ in range(5)]:
        says(paystack, payment)

    call_command("reconcile")

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "reconcile: 5 pending payment(s); verifying",
        "reconcile: 2/5 checked: credited 2",
        "reconcile: 4/5 checked: credited 4",
        "reconcile: 5 checked: credited 5",
    ]


@pytest.mark.django_db
def test_reconcile_fails_a_never_paid_payment_once_expired_and_counts_it(paystack, capsys):
    never_paid = created_ago(PaymentFactory(), timedelta(days=2))
    paystack.add(responses.GET, verify_url(never_paid.reference), status=404, json=NOT_FOUND)
    failed_before = counted("tally_payments_settled_total", outcome="failed")

    call_command("reconcile")

    assert "reconcile: 1 checked: failed 1" in capsys.readouterr().out
    assert Payment.objects.get(pk=never_paid.pk).status == Payment.Status.FAILED
    assert counted("tally_payments_settled_total", outcome="failed") == failed_before + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("soon", "--since: 'soon' is not a duration"),
        ("0h", "--since: '0h' is an empty window"),
        ("999999d", "--since: '999999d' reaches back before the calendar starts"),
    ],
)
def test_reconcile_bad_since_raises_command_error_with_returncode_2(paystack, since, message):
    PaymentFactory()

    with pytest.raises(CommandError, match=message) as error:
        call_command("reconcile", since=since)

    assert error.value.returncode == 2
    assert len(paystack.calls) == 0


# --- logs --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_settled_delivery_logs_json_lines_with_reference_event_id_and_task_id(paystack, caplog):
    payment = PaymentFactory()
    says(paystack, payment)
    delivery = DeliveryFactory(payment=payment)

    with caplog.at_level(logging.INFO):
        task_id = process_delivery.apply(args=(delivery.pk,)).id

    # Formatted after the task has finished, as a queue handler would.
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    finished = next(line for line in lines if line["message"] == "delivery processed")
    assert finished["reference"] == payment.reference
    assert finished["event_id"] == delivery.pk
    assert finished["outcome"] == "credited"
    assert finished["task_id"] == task_id
    settled = next(line for line in lines if line["message"] == "payment settled")
    assert (settled["reference"], settled["outcome"]) == (payment.reference, "credited")
    assert settled["task_id"] == task_id


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("tally.test", logging.ERROR, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_the_redaction_filter_hides_paystack_secret_keys_everywhere_in_a_line():
    live = "sk_live_" + "a1" * 20
    try:
        raise RuntimeError(f"gateway said: bad key {live}")
    except RuntimeError:
        record = _record(
            "calling with %s",
            "Bearer " + live,
            headers={"Authorization": "Bearer sk_test_0123456789abcdef"},
            error=ValueError(f"echoed {live}"),
            attempts=3,
        )
        record.exc_info = sys.exc_info()

    assert RedactSecrets().filter(record) is True  # redacts, never drops
    line = JsonFormatter().format(record)

    assert "a1a1" not in line and "0123456789abcdef" not in line
    entry = json.loads(line)
    assert entry["message"] == "calling with Bearer sk_live_[redacted]"
    assert entry["headers"] == {"Authorization": "Bearer sk_test_[redacted]"}
    assert entry["error"] == "echoed sk_live_[redacted]"
    assert entry["attempts"] == 3
    assert "bad key sk_live_[redacted]" in entry["exc_info"]


def test_the_redaction_filter_hides_the_configured_key_whatever_its_shape(settings):
    settings.PAYSTACK_SECRET_KEY = "sandbox-secret-7c1e"
    record = _record("signing with sandbox-secret-7c1e", key="sandbox-secret-7c1e")

    RedactSecrets().filter(record)
    entry = json.loads(JsonFormatter().format(record))

    assert entry["message"] == "signing with [redacted]"
    assert entry["key"] == "[redacted]"


def test_the_redaction_filter_guards_the_handler_every_line_goes_through():
    guarded = [
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(f, RedactSecrets) for f in handler.filters)
    ]

    assert guarded, "settings.LOGGING must put RedactSecrets on the root handler"


@pytest.mark.django_db
def test_reconcile_goes_on_past_a_payment_the_gateway_refuses(paystack, capsys):
    refused, paid = PaymentFactory(), PaymentFactory(votes=2)
    paystack.add(
        responses.GET,
        verify_url(refused.reference),
        status=401,
        json={"status": False, "message": "Invalid key"},
    )
    says(paystack, paid)

    call_command("reconcile")

    assert "credited 1, rejected 1" in capsys.readouterr().out
    assert Payment.objects.get(pk=refused.pk).status == "pending"
    assert Payment.objects.get(pk=paid.pk).status == "credited"


@pytest.mark.django_db
def test_reconcile_checks_the_least_recently_verified_first(paystack):
    checked_long_ago, never_checked = PaymentFactory(), PaymentFactory()
    Payment.objects.filter(pk=checked_long_ago.pk).update(
        verified_at=timezone.now() - timedelta(hours=1),
        created_at=timezone.now() - timedelta(days=1),
    )
    says(paystack, checked_long_ago)
    says(paystack, never_checked)

    report = reconcile_payments(created_before=timezone.now(), limit=1)

    assert report.checked == 1
    assert Payment.objects.get(pk=never_checked.pk).status == "credited"
    assert Payment.objects.get(pk=checked_long_ago.pk).status == "pending"
