"""Admin logins are throttled (django-axes): 30 wrong passwords do not get 30 tries."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")
PASSWORD = "a long and unguessable passphrase"
ATTACKER = "203.0.113.9"


@pytest.fixture(autouse=True)
def fast_hashing(settings: Any) -> None:
    """Each try hashes a password; the production hasher would make 30 tries take seconds."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff() -> Any:
    return get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)


def log_in(username: str, password: str, address: str, **extra: Any) -> Any:
    return Client().post(
        LOGIN,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        **extra,
    )


def test_thirty_wrong_passwords_lock_the_address_out(staff):
    answers = [log_in("ops", f"guess {n}", ATTACKER).status_code for n in range(30)]
    right = log_in("ops", PASSWORD, ATTACKER)

    assert answers[:9] == [200] * 9  # the form again, with an error
    assert set(answers[10:]) == {429}  # locked: no more guesses are even checked
    assert right.status_code == 429


def test_guesses_spread_over_addresses_lock_the_username(staff):
    for n in range(10):
        log_in("ops", f"guess {n}", f"198.51.100.{n}")

    assert log_in("ops", PASSWORD, "192.0.2.1").status_code == 429
    get_user_model().objects.create_superuser("other", "o@example.com", PASSWORD)
    assert log_in("other", PASSWORD, "192.0.2.1").status_code == 302  # another account: in


def test_a_right_password_before_the_limit_logs_in_and_resets_the_count(staff):
    for n in range(9):
        log_in("ops", f"guess {n}", ATTACKER)

    assert log_in("ops", PASSWORD, ATTACKER).status_code == 302
    assert log_in("ops", "one more guess", ATTACKER).status_code == 200


def test_behind_a_proxy_a_spoofed_forwarded_entry_does_not_reset_the_count(staff, settings):
    settings.PROXY_HOPS = 1

    answers = [
        log_in(
            f"user{n}",  # a new username each time: only the address can be counted
            f"guess {n}",
            "10.0.0.2",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, {ATTACKER}",
        ).status_code
        for n in range(11)
    ]

    assert answers[-1] == 429
