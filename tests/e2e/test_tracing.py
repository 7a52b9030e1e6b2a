"""Traces end to end: one webhook is one trace across gunicorn, the broker and a Celery worker.

The processes export with the product's own OTLP exporter, switched on by
OTEL_EXPORTER_OTLP_ENDPOINT alone, to a stand-in collector in the test (tests/e2e/otlp.py).
"""

import json

import pytest

from devstack.processes import free_port
from tests.e2e.otlp import ReceivedSpan, otlp_collector
from tests.e2e.test_pipeline import all_credited
from tests.factories import PaymentFactory
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

# SpanKind as OTLP numbers it (opentelemetry.proto.trace.v1.Span.SpanKind).
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5
DELIVERIES_TASK = "tally.process_deliveries"


def test_a_delivery_is_traced_from_the_webhook_post_to_the_ledger_write(stack, sandbox):
    port = free_port()
    with otlp_collector(port) as collector:
        stack.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
        stack.env["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # ms: export within the test's wait
        stack.env["LOG_FORMAT"] = "json"
        stack.web(port=int(stack.env["WEB_PORT"]))
        worker = stack.worker(concurrency=1)
        payment = PaymentFactory(votes=3)
        sandbox.paid([payment])

        sandbox.deliver(payment.reference)
        wait_until(all_credited([payment]), timeout=30)

        # Each process exports in batches: wait for the worker's spans to arrive too.
        wait_until(lambda: Trace(collector.spans(), payment.reference).complete(), timeout=30)
        spans = collector.spans()

    trace = Trace(spans, payment.reference)
    post = trace.webhook_post()
    assert post.service == "tally-web" and post.parent_span_id == ""  # the trace starts here
    publish = trace.one(PRODUCER, "tally-web", lambda s: DELIVERIES_TASK in s.name)
    assert publish.trace_id == post.trace_id
    # The worker runs a batch of messages as one task: its span starts a trace of its own and
    # links to the publish of each message it took (carried in the message's headers).
    run = trace.task_run()
    assert (publish.trace_id, publish.span_id) in run.links
    verify = trace.verify_call()
    ledger_write = trace.ledger_write()
    assert {s.trace_id for s in (run, verify, ledger_write)} == {run.trace_id}
    # The gateway call and the credit's ledger entry, both inside the task's span.
    assert verify.parent_span_id == run.span_id
    assert ledger_write.parent_span_id == run.span_id

    # The lines the run wrote about this payment name its trace and the task's span.
    lines = json_lines(worker.output())
    about = [line for line in lines if line.get("reference") == payment.reference]
    assert {line["message"] for line in about} >= {"payment settled", "delivery processed"}
    assert {(line["trace_id"], line["span_id"]) for line in about} == {(run.trace_id, run.span_id)}


class Trace:
    """The spans of one delivery, found by what they did."""

    def __init__(self, spans: list[ReceivedSpan], reference: str) -> None:
        self.spans = spans
        self.reference = reference

    def complete(self) -> bool:
        """Every span the test reads has arrived (the task's own span ends, and is exported,
        after the calls inside it)."""
        try:
            self.ledger_write()
            self.verify_call()
            self.webhook_post()
            self.task_run()
        except LookupError:
            return False
        return True

    def task_run(self) -> ReceivedSpan:
        return self.one(CONSUMER, "tally-worker", lambda s: DELIVERIES_TASK in s.name)

    def webhook_post(self) -> ReceivedSpan:
        return self.one(SERVER, "tally-web", lambda s: "webhooks/paystack" in _target(s))

    def verify_call(self) -> ReceivedSpan:
        path = f"/transaction/verify/{self.reference}"
        return self.one(CLIENT, "tally-worker", lambda s: path in _target(s))

    def ledger_write(self) -> ReceivedSpan:
        insert = 'INSERT INTO "ledger_ledgerentry"'
        return self.one(CLIENT, "tally-worker", lambda s: insert in _sql(s))

    def one(self, kind: int, service: str, matches) -> ReceivedSpan:
        found = [s for s in self.spans if s.kind == kind and s.service == service and matches(s)]
        if not found:
            raise LookupError(f"no {service} span of kind {kind} matching")
        return found[0]


def _target(span: ReceivedSpan) -> str:
    """The URL or path of an HTTP span, under the old or the stable semantic conventions."""
    keys = ("http.url", "url.full", "http.target", "url.path", "http.route")
    return " ".join(str(span.attributes.get(key, "")) for key in keys)


def _sql(span: ReceivedSpan) -> str:
    return str(span.attributes.get("db.statement") or span.attributes.get("db.query.text") or "")


def json_lines(output: str) -> list[dict]:
    """The JSON log lines of a process's output (Celery's banner is plain text)."""
    return [json.loads(text) for text in output.splitlines() if text.startswith("{")]
