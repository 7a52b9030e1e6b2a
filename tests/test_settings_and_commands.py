import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ledger.models import Contest, Contestant
from tests.factories import ContestantFactory


def _load_settings(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PAYSTACK_", "DEBUG"))}
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


@pytest.mark.django_db
def test_seed_demo_twice_changes_nothing(capsys):
    call_command("seed_demo", contestants=3)
    call_command("seed_demo", contestants=3)

    assert Contest.objects.count() == 1
    assert Contestant.objects.count() == 3
    assert "0 contestant(s) added, 3 in all" in capsys.readouterr().out


@pytest.mark.django_db
def test_seed_demo_rejects_a_bad_count():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("seed_demo", contestants=0)


@pytest.mark.django_db
def test_check_ledger_exits_1_naming_a_contestant_out_of_balance(capsys):
    ContestantFactory(name="Clean")
    broken = ContestantFactory(name="Tampered", votes=9)

    with pytest.raises(SystemExit) as exit_info:
        call_command("check_ledger")

    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert f"contestant {broken.pk} (Tampered): votes=9 ledger=0" in out
    assert "1 out of balance" in out
    assert "Clean" not in out


@pytest.mark.parametrize("command", ["reconcile", "replay_events"])
def test_a_bad_since_from_the_shell_exits_2_with_the_message_on_stderr(command):
    result = subprocess.run(
        [sys.executable, "manage.py", command, "--since", "soon"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "--since: 'soon' is not a duration" in result.stderr
    assert result.stdout == ""


def test_a_typo_in_the_webhook_allowlist_stops_start_up_naming_it():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "PAYSTACK_WEBHOOK_IPS": "52.31.139.75,paystak"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "PAYSTACK_WEBHOOK_IPS: 'paystak' is neither an address nor a network" in result.stderr
