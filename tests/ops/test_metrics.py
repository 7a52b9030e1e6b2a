"""/metrics: counters of every process and gauges of the state now."""

import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from celery import current_app
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config.metrics import webhook_deliveries
from ops.gauges import forget_live_reading
from tests.factories import DeliveryFactory
from tests.helpers import charge_success, event_bytes
from webhooks.models import Delivery

REPO = Path(__file__).resolve().parents[2]
CLOSED_PORT = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client, *, fresh: bool = True) -> Samples:
    """GET /metrics and parse it as Prometheus does: {(sample name, labels): value}.

    `fresh`: forget the shared reading first, so the gauges say what the database says now.
    """
    if fresh:
        forget_live_reading()
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
    for status in ("received", "processing", "failed"):
        assert sample(after, "tally_deliveries", status=status) == 0
    for status in ("processed", "ignored"):  # counting them would read the whole log
        assert sample(after, "tally_deliveries", status=status) is None
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

    assert age is not None
    assert 600 <= age < 660


@pytest.mark.django_db
def test_an_unreachable_broker_skips_queue_depth_and_the_scrape_still_succeeds(
    client, monkeypatch, caplog
):
    monkeypatch.setitem(current_app.conf, "broker_read_url", CLOSED_PORT)
    DeliveryFactory()

    with caplog.at_level(logging.WARNING, logger="ops.gauges"):
        samples = scrape(client)

    assert not [key for key in samples if key[0] == "tally_queue_depth"]
    assert sample(samples, "tally_deliveries", status="queued") == 1
    assert sample(samples, "tally_votes_credited_total") is not None  # counters still there
    warning = next(r for r in caplog.records if r.name == "ops.gauges")
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
