"""With DEBUG=0: secure cookies, HSTS on https, password validation, and a clean
`manage.py check --deploy` for a production-like environment (tally's own checks included)."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

REPO = Path(__file__).resolve().parents[2]

# What a production deployment sets: Paystack over https, no sandbox, real secrets, its hosts.
PRODUCTION = {
    "DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "PAYSTACK_SECRET_KEY": "sk_live_" + secrets.token_hex(20),
    "PAYSTACK_BASE_URL": "https://api.paystack.co",
    "TALLY_SANDBOX": "0",
    "ALLOWED_HOSTS": "vote.example.com",
    "PROXY_HOPS": "1",
    "METRICS_TOKEN": secrets.token_urlsafe(24),
}


def check_deploy(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env={**os.environ, **PRODUCTION, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_for_a_production_like_environment():
    result = check_deploy()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("env", "check_id"),
    [
        ({"DJANGO_SECRET_KEY": "change-me-in-production"}, "tally.E001"),
        ({"PAYSTACK_SECRET_KEY": "sk_test_sandbox"}, "tally.E002"),
        ({"ALLOWED_HOSTS": "*"}, "tally.W001"),
        (
            {"TALLY_SANDBOX": "1", "PAYSTACK_BASE_URL": "http://sandbox:8001"},
            "tally.W002",
        ),
    ],
)
def test_check_deploy_names_a_published_secret_an_open_host_check_or_the_sandbox(env, check_id):
    result = check_deploy(**env)

    assert result.returncode != 0
    assert check_id in result.stdout + result.stderr


def test_cookies_are_secure_and_passwords_are_validated_without_debug():
    assert settings.DEBUG is False
    assert settings.SESSION_COOKIE_SECURE and settings.CSRF_COOKIE_SECURE
    assert settings.SESSION_COOKIE_HTTPONLY
    with pytest.raises(ValidationError):
        validate_password("admin")
    with pytest.raises(ValidationError):
        validate_password("12345678901")
    validate_password("correct horse battery staple")


def test_hsts_is_sent_on_https_requests_only(client):
    secure = client.get("/healthz", secure=True)
    plain = client.get("/healthz")

    assert secure["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in plain
