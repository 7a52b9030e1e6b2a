from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path

from config.health import healthz, readyz
from config.metrics_view import metrics

urlpatterns = [
    path("webhooks/", include("webhooks.urls")),
    path("admin/", admin.site.urls),
    path("", include("ledger.urls")),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    # The admin's CSS and JS, straight from the installed apps: tally has no other static
    # files, so no collectstatic step or extra server is needed.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]
