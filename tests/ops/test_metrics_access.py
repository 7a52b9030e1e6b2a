"""/metrics is not public: a bearer token when METRICS_TOKEN is set, else this host only."""

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-metrics-token"
OUTSIDER = "203.0.113.9"


def scrape(**extra: Any):
    return Client().get("/metrics", **extra)


def test_with_a_token_a_scrape_without_it_or_with_another_gets_401(settings, broker):
    settings.METRICS_TOKEN = TOKEN

    missing = scrape()
    wrong = scrape(HTTP_AUTHORIZATION="Bearer not-the-token")
    basic = scrape(HTTP_AUTHORIZATION=f"Basic {TOKEN}")
    prefix = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}")

    for refused in (missing, wrong, basic, prefix):
        assert refused.status_code == 401
        assert refused["WWW-Authenticate"].startswith("Bearer")
        assert b"tally_" not in refused.content


def test_with_a_token_the_right_one_is_answered_from_anywhere(settings, broker):
    settings.METRICS_TOKEN = TOKEN

    response = scrape(REMOTE_ADDR=OUTSIDER, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    lower = scrape(REMOTE_ADDR=OUTSIDER, HTTP_AUTHORIZATION=f"bearer {TOKEN}")

    assert response.status_code == lower.status_code == 200
    assert b"tally_webhook_deliveries_total" in response.content


def test_without_a_token_only_this_host_is_answered(settings, broker):
    settings.METRICS_TOKEN = ""

    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 200
    assert scrape(REMOTE_ADDR="::1").status_code == 200
    outsider = scrape(REMOTE_ADDR=OUTSIDER)
    assert outsider.status_code == 403
    assert b"tally_" not in outsider.content


@pytest.mark.parametrize("hops", [0, 1])
def test_without_a_token_a_request_through_a_proxy_on_this_host_is_refused(settings, hops):
    """The proxy connects from loopback on behalf of anyone: a proxied request is not local,
    even when the entry it wrote says 127.0.0.1."""
    settings.METRICS_TOKEN = ""
    settings.PROXY_HOPS = hops

    for forwarded in (OUTSIDER, "127.0.0.1"):
        response = scrape(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
        assert response.status_code == 403
