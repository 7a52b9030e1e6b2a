"""Prometheus metrics. Under gunicorn and Celery's prefork pool, set PROMETHEUS_MULTIPROC_DIR
so every process writes its samples where /metrics can add them up."""

from prometheus_client import Counter, Histogram

webhook_deliveries = Counter(
    "tally_webhook_deliveries_total",
    "Every POST to the webhook endpoint, by event type and outcome.",
    ["event", "outcome"],
)
gateway_verify_seconds = Histogram(
    "tally_gateway_verify_seconds",
    "Verify calls to the gateway, by outcome.",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
payments_settled = Counter(
    "tally_payments_settled_total", "Settle attempts, by outcome.", ["outcome"]
)
votes_credited = Counter("tally_votes_credited_total", "Votes added to contestants.")
votes_reversed = Counter("tally_votes_reversed_total", "Votes taken back by reversals.")
