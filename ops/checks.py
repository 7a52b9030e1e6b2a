"""tally's own deployment checks, run by `manage.py check --deploy` next to Django's.

They catch the configuration mistakes that make a deployment unsafe while every setting is
still well-formed: a secret published in this repository, a host check switched off, a sandbox
flag left on (docs/contract.md, guarantee 8).
"""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

# Secrets that appear in this repository, its examples or its history: anyone can read them.
PUBLISHED_DJANGO_SECRET_KEYS = frozenset(
    {
        "change-me-in-production",
        "insecure-dev-only-key",
        "test-only-django-secret",
        "bench-only-django-secret",
    }
)
PUBLISHED_PAYSTACK_KEYS = frozenset(
    {"sk_test_sandbox", "sk_test_tally_suite", "sk_test_tally_bench"}
)


@register(Tags.security, deploy=True)
def check_deployment(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if settings.SECRET_KEY in PUBLISHED_DJANGO_SECRET_KEYS:
        problems.append(
            Error(
                "DJANGO_SECRET_KEY is a value published in tally's repository",
                hint="Generate one: python -c 'import secrets; print(secrets.token_urlsafe(50))'",
                id="tally.E001",
            )
        )
    if settings.PAYSTACK_SECRET_KEY in PUBLISHED_PAYSTACK_KEYS and not settings.TALLY_SANDBOX:
        problems.append(
            Error(
                "PAYSTACK_SECRET_KEY is a key published in tally's repository: anyone can sign "
                "webhooks with it",
                hint="Use the secret key from Paystack's dashboard.",
                id="tally.E002",
            )
        )
    if "*" in settings.ALLOWED_HOSTS and not settings.DEBUG:
        problems.append(
            Warning(
                "ALLOWED_HOSTS contains '*': any Host header is accepted",
                hint="List the host names payers, Paystack and Prometheus use.",
                id="tally.W001",
            )
        )
    if settings.TALLY_SANDBOX:
        problems.append(
            Warning(
                "TALLY_SANDBOX=1: the gateway is a stand-in and no payment is real money",
                hint="Unset it, and point PAYSTACK_BASE_URL at https://api.paystack.co.",
                id="tally.W002",
            )
        )
    return problems
