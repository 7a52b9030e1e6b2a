"""What log lines carry: JSON with context, task ids, and never a secret."""

import json
import logging
import sys

import pytest

from config.logging import JsonFormatter, RedactSecrets
from tasks.deliveries import process_delivery
from tests.factories import DeliveryFactory, PaymentFactory
from tests.helpers import says


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
