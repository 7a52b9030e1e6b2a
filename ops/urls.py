"""Health, readiness and metrics for load balancers, orchestrators and Prometheus; the
payment timeline for the person on call."""

from django.urls import path

from ops.health import healthz, readyz
from ops.metrics import metrics
from ops.timeline import payment_timeline_page

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    # Staff only, beside the admin: it reads payments and deliveries, which the admin's
    # ledger pages may not import.
    path("ops/payments/<str:reference>/", payment_timeline_page, name="payment-timeline"),
]
