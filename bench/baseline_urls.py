"""URLs of the baseline web process: the bare webhook view where tally's endpoint lives."""

from django.urls import path

from bench.baseline_views import bare_webhook
from ops.health import healthz

urlpatterns = [
    path("webhooks/paystack/", bare_webhook, name="bare-webhook"),
    path("healthz", healthz, name="healthz"),
]
