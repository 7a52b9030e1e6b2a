"""Health, readiness and metrics for load balancers, orchestrators and Prometheus."""

from django.urls import path

from ops.health import healthz, readyz
from ops.metrics import metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]
