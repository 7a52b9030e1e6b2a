"""The URL map. Apps are named by string, so config imports none of them."""

from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path

urlpatterns = [
    path("webhooks/", include("webhooks.urls")),
    path("admin/", admin.site.urls),
    path("", include("ops.urls")),
    path("", include("voting.urls")),
    # The admin's CSS and JS (and the delivery page's stylesheet), straight from the installed
    # apps: tally has no other static files, so no collectstatic step or extra server is needed.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]
