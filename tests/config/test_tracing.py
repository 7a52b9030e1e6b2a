"""Tracing is off (and costs nothing) unless an OTLP endpoint is set; log lines name the span.

Turning tracing on patches libraries for the whole process, so each case runs in a fresh
Python that starts the way gunicorn or a Celery pool process does. The cross-process trace
itself is tests/e2e/test_tracing.py.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.logging import ConsoleFormatter, JsonFormatter, stamp_trace_ids

REPO = Path(__file__).resolve().parents[2]
CLOSED_PORT = "http://127.0.0.1:1"  # nothing listens there; no span is exported in these tests

# Starts like gunicorn's worker (config.wsgi) or a Celery pool process (worker_process_init),
# then reports what tracing did to the process.
PROBE = """
import json, os, sys
process = sys.argv[1]
if process == "web":
    import config.wsgi
else:
    from celery.signals import worker_process_init
    from config.celery_app import app
    worker_process_init.send(sender="probe")
import requests
from django.conf import settings
from opentelemetry import trace
from opentelemetry.trace import SpanKind

def request_spans():  # the spans of probes, a scrape and a webhook GET (405) through Django
    if process != "web":
        return []
    from django.test import Client
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    for path in ("/healthz", "/readyz", "/metrics", "/webhooks/paystack/"):
        Client().get(path)
    return [span.name for span in exporter.get_finished_spans()]

tracer = trace.get_tracer("probe")
provider = trace.get_tracer_provider()
with tracer.start_as_current_span("request", kind=SpanKind.SERVER) as request:
    child_recorded = tracer.start_span("SELECT", kind=SpanKind.CLIENT).is_recording()
    request_recorded = request.is_recording()
print(json.dumps({
    "service": getattr(provider, "resource", None) and provider.resource.attributes["service.name"],
    "django_middleware": any("opentelemetry" in m for m in settings.MIDDLEWARE),
    "requests_patched": hasattr(requests.Session.send, "__wrapped__"),
    "request_recorded": request_recorded,
    "child_recorded": child_recorded,
    "bare_client_recorded": tracer.start_span("SELECT", kind=SpanKind.CLIENT).is_recording(),
    "request_spans": request_spans(),
}))
sys.stdout.flush()
os._exit(0)  # skip the exit-time export to a port where nobody listens
"""

OFF_PROBE = """
import sys
import config.wsgi
from celery.signals import worker_process_init, beat_init
from config.celery_app import app
worker_process_init.send(sender="probe")
beat_init.send(sender="probe")
import requests
from django.conf import settings
assert not any("opentelemetry" in m for m in settings.MIDDLEWARE), settings.MIDDLEWARE
assert not hasattr(requests.Session.send, "__wrapped__")
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""


def run_python(code: str, *args: str, **env: str) -> str:
    """Run code in a fresh interpreter with no OTEL_* variable but those given; its stdout."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def probe(process: str, **env: str) -> dict:
    return json.loads(run_python(PROBE, process, **env))


def test_without_an_endpoint_nothing_of_opentelemetry_is_even_imported():
    assert run_python(OFF_PROBE) == "[]"


def test_the_sdk_disabled_switch_wins_over_an_endpoint():
    loaded = run_python(
        OFF_PROBE, OTEL_EXPORTER_OTLP_ENDPOINT=CLOSED_PORT, OTEL_SDK_DISABLED="true"
    )
    assert loaded == "[]"


def test_web_with_an_endpoint_traces_requests_gateway_calls_and_sql_as_tally_web():
    report = probe("web", OTEL_EXPORTER_OTLP_ENDPOINT=CLOSED_PORT)

    assert report["service"] == "tally-web"
    assert report["django_middleware"] is True
    assert report["requests_patched"] is True
    assert report["request_recorded"] is True
    assert report["child_recorded"] is True  # SQL inside a request is part of its trace
    assert report["bare_client_recorded"] is False  # SQL outside any request starts none
    # Probes and scrapes (and their SQL) are not traced; the webhook is.
    assert report["request_spans"] == ["GET webhooks/paystack/"]


def test_a_worker_pool_process_traces_as_tally_worker_without_django_middleware():
    report = probe("worker", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{CLOSED_PORT}/v1/traces")

    assert report["service"] == "tally-worker"
    assert report["django_middleware"] is False
    assert report["requests_patched"] is True


def test_otel_service_name_names_the_process():
    report = probe("worker", OTEL_EXPORTER_OTLP_ENDPOINT=CLOSED_PORT, OTEL_SERVICE_NAME="votes-eu")
    assert report["service"] == "votes-eu"


@pytest.fixture
def record_factory():
    """Put back the log record factory a test replaces."""
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


def test_log_lines_name_the_trace_and_span_they_were_written_in(record_factory):
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    current: list[tuple[str, str] | None] = [(trace_id, span_id)]
    stamp_trace_ids(lambda: current[0])
    stamping = logging.getLogRecordFactory()
    stamp_trace_ids(lambda: current[0])  # again, as a second set-up would: no second stamp
    assert logging.getLogRecordFactory() is stamping
    logger = logging.getLogger("tally.test")

    def make(message: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, (), None)

    in_span = make("payment settled")
    current[0] = None
    outside = make("worker ready")

    line = json.loads(JsonFormatter().format(in_span))
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)
    assert f"trace_id={trace_id} span_id={span_id}" in ConsoleFormatter().format(in_span)
    assert "trace_id" not in json.loads(JsonFormatter().format(outside))
