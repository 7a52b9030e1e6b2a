"""A Content-Security-Policy on every page: only our own scripts and styles run, inline ones
only with the response's nonce, so an injected <script> does nothing."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from ledger.services import certify_contest
from tests.factories import ContestantFactory, ContestFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def policy_of(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {
        directive.split(" ", 1)[0]: directive.split(" ", 1)[1] if " " in directive else ""
        for directive in (part.strip() for part in header.split(";"))
        if directive
    }


def nonce_of(policy: dict[str, str]) -> str:
    found = re.search(r"'nonce-([^']+)'", policy["script-src"])
    assert found, policy
    return found.group(1)


def page_of(page: str):
    """A page with an inline style, and one with a script when it has one."""
    if page == "contest":
        return Client().get(f"/c/{ContestantFactory().contest.slug}/")
    if page == "results":
        contest = ContestFactory(closes_at=timezone.now() - timedelta(hours=2))
        ContestantFactory(contest=contest)
        certify_contest(contest_id=contest.pk)
        return Client().get(f"/results/{contest.slug}/")
    if page == "contests":
        ContestantFactory()
        return Client().get("/")
    return Client().get(f"/payments/{PaymentFactory().reference}/")


@pytest.mark.parametrize("page", ["contest", "pending payment", "contests", "results"])
def test_each_inline_script_and_style_carries_the_nonce_the_policy_names(page):
    response = page_of(page)
    assert response.status_code == 200

    policy = policy_of(response)
    nonce = nonce_of(policy)
    html = response.content.decode()

    assert policy["default-src"] == "'self'"
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert f"'nonce-{nonce}'" in policy["style-src"]
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    scripts = re.findall(r"<script(?![^>]*application/json)([^>]*)>", html)
    styles = re.findall(r"<style([^>]*)>", html)
    assert styles and (scripts or page in ("contests", "results"))
    assert " style=" not in html  # the policy refuses style attributes: bars are <meter>s
    for attributes in scripts + styles:
        assert f'nonce="{nonce}"' in attributes


def test_each_response_gets_its_own_nonce():
    slug = ContestantFactory().contest.slug

    first, second = (nonce_of(policy_of(Client().get(f"/c/{slug}/"))) for _ in range(2))

    assert first != second


def test_the_admin_and_the_api_are_covered_too(admin_client):
    for response in (admin_client.get("/admin/"), Client().get("/api/contestants/")):
        assert "default-src 'self'" in response["Content-Security-Policy"]
