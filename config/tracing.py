"""OpenTelemetry traces: off unless an OTLP endpoint is configured (docs/operations.md#traces).

A webhook's trace holds gunicorn's request span (Django) and the Celery publish. A worker
runs many delivery messages as one task (a batch): that run is a trace of its own, linked to
the publish of every message it took (Celery carries each in the message headers), with the
verify calls to the gateway (requests) and every SQL statement (psycopg), the ledger's writes
included, inside it. A retry's message (one delivery) continues its sender's trace.

Each process turns tracing on where it starts, after any fork: config/wsgi.py for web
(gunicorn imports it in each worker), config/celery_app.py's worker_process_init for each
prefork child and beat_init for beat. OpenTelemetry's advice for pre-forking servers is to
set the SDK up in each child: its export thread and HTTP connection then belong to the
process that makes the spans, and a parent that only forks traces nothing.

When OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is unset, or
OTEL_SDK_DISABLED=true, configure_tracing() returns at once: the SDK, the exporter and the
instrumentation packages are not even imported, nothing is patched, and log records get no
stamp. The rest of the standard OTEL_* variables (service name, headers, sampler, batch
sizes) are read by the SDK itself.
"""

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from config.logging import stamp_trace_ids

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Link, SpanKind
    from opentelemetry.trace.span import TraceState
    from opentelemetry.util.types import Attributes

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# Probes and scrapes arrive every few seconds from load balancers and Prometheus; a trace of
# each would bury the webhooks. OTEL_PYTHON_DJANGO_EXCLUDED_URLS replaces this list.
DEFAULT_EXCLUDED_URLS = "/healthz,/readyz,/metrics"

_provider: "TracerProvider | None" = None


def tracing_enabled() -> bool:
    """True when an OTLP endpoint is set and the SDK is not disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name, "").strip() for name in ENDPOINT_VARS)


def configure_tracing(*, service: str, django: bool = False) -> bool:
    """Export this process's spans over OTLP/HTTP and instrument its libraries, once.

    `service` names the process (tally-web, tally-worker, tally-beat) unless
    OTEL_SERVICE_NAME says otherwise. `django` adds the request spans (web only). Returns
    whether tracing is on.
    """
    global _provider
    if _provider is not None:
        return True
    if not tracing_enabled():
        return False
    # Imported here, not at the top: with tracing off none of this is loaded.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, but attributes
    # given here win: name the process only when the operator has not.
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {SERVICE_NAME: service})
    provider = TracerProvider(resource=resource, sampler=_default_sampler())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)

    CeleryInstrumentor().instrument()
    RequestsInstrumentor().instrument()
    PsycopgInstrumentor().instrument()
    if django:
        _instrument_django()

    def current_trace_ids() -> tuple[str, str] | None:
        """(trace id, span id) in hex of the span running in this thread now, if any."""
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)

    stamp_trace_ids(current_trace_ids)
    _provider = provider
    return True


def link_to_senders(headers: Iterable[Mapping[str, Any]]) -> None:
    """Link the span running now (a batch run's) to the span that sent each message, found
    in its headers: OpenTelemetry's way for one consumer span that serves many messages."""
    if _provider is None:
        return
    from opentelemetry import propagate, trace

    running = trace.get_current_span()
    for carrier in headers:
        sender = trace.get_current_span(propagate.extract(carrier)).get_span_context()
        if sender.is_valid:
            running.add_link(sender)


def flush_traces() -> None:
    """Send the spans still buffered: a prefork child may exit before the next batch."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=5000)


def _instrument_django() -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    chosen = ("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
    excluded = None if any(os.environ.get(name) for name in chosen) else DEFAULT_EXCLUDED_URLS
    # Adds its middleware to settings.MIDDLEWARE: call before Django builds its handler.
    DjangoInstrumentor().instrument(excluded_urls=excluded)


def _default_sampler() -> "Sampler | None":
    """None (the SDK reads OTEL_TRACES_SAMPLER) when the operator chose a sampler; else
    every trace, but started only by a request, a task or a publish (see NoBareClientSpans)."""
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    from opentelemetry.sdk.trace.sampling import ParentBased

    return ParentBased(root=_no_bare_client_spans())


def _no_bare_client_spans() -> "Sampler":
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class NoBareClientSpans(Sampler):
        """Drop a client span (an SQL statement, an HTTP call) that has no parent.

        Work outside a request or a task (the excluded /readyz and /metrics, start-up
        queries) would otherwise make a one-span trace per statement.
        """

        def should_sample(
            self,
            parent_context: "Context | None",
            trace_id: int,
            name: str,
            kind: "SpanKind | None" = None,
            attributes: "Attributes" = None,
            links: "Sequence[Link] | None" = None,
            trace_state: "TraceState | None" = None,
        ) -> SamplingResult:
            if kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

        def get_description(self) -> str:
            return "NoBareClientSpans"

    return NoBareClientSpans()
