"""Settings from the environment: bad values stop start-up naming the variable."""

import os
import subprocess
import sys


def _load_settings(**env: str) -> subprocess.CompletedProcess:
    unset = ("PAYSTACK_", "DEBUG", "TALLY_SANDBOX")
    base = {k: v for k, v in os.environ.items() if not k.startswith(unset)}
    return subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; settings.DATABASES"],
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_paystack_secret_key_without_debug_fails_naming_it():
    result = _load_settings(DEBUG="0")

    assert result.returncode != 0
    assert "PAYSTACK_SECRET_KEY is required unless DEBUG=1" in result.stderr


def test_debug_runs_without_a_paystack_key():
    assert _load_settings(DEBUG="1").returncode == 0


def test_a_bad_number_in_the_environment_is_named():
    result = _load_settings(DEBUG="1", PAYSTACK_TIMEOUT="soon")

    assert result.returncode != 0
    assert "PAYSTACK_TIMEOUT must be a whole number" in result.stderr


def test_an_unknown_log_level_is_named_and_lower_case_is_accepted():
    wrong = _load_settings(DEBUG="1", LOG_LEVEL="chatty")
    lower = _load_settings(DEBUG="1", LOG_LEVEL="warning")

    assert wrong.returncode != 0
    assert "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not 'CHATTY'" in wrong.stderr
    assert lower.returncode == 0, lower.stderr


PRODUCTION = {"DEBUG": "0", "PAYSTACK_SECRET_KEY": "sk_live_x"}


def test_a_gateway_over_http_without_debug_is_refused_unless_it_is_the_sandbox():
    """Guarantee 8: a sandbox left in a DEBUG=0 configuration must not mark payments paid."""
    refused = _load_settings(**PRODUCTION, PAYSTACK_BASE_URL="http://sandbox:8001")
    sandbox = _load_settings(
        **PRODUCTION, PAYSTACK_BASE_URL="http://sandbox:8001", TALLY_SANDBOX="1"
    )

    assert refused.returncode != 0
    assert (
        "PAYSTACK_BASE_URL must be https with DEBUG=0, not 'http://sandbox:8001'" in refused.stderr
    )
    assert sandbox.returncode == 0, sandbox.stderr


def test_paystack_over_https_and_a_debug_sandbox_need_no_flag():
    assert _load_settings(**PRODUCTION).returncode == 0
    assert _load_settings(**PRODUCTION, PAYSTACK_BASE_URL="https://api.paystack.co").returncode == 0
    assert _load_settings(DEBUG="1", PAYSTACK_BASE_URL="http://127.0.0.1:8001").returncode == 0


def test_a_rate_limit_that_is_not_a_rate_is_named():
    wrong = _load_settings(DEBUG="1", RATE_LIMIT_PAYMENTS="lots")
    right = _load_settings(DEBUG="1", RATE_LIMIT_PAYMENTS="5/s")

    assert wrong.returncode != 0
    assert "RATE_LIMIT_PAYMENTS must be a count per s, m, h or d such as 20/m" in wrong.stderr
    assert right.returncode == 0, right.stderr
