"""Flower's options, checked before it listens (read by flowerconfig.py at the repository root).

Flower can run tasks through its API, so it must not listen beyond this host unless told to,
and never without a password or with the one the examples used to ship (guarantee 8).
"""

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_ADDRESS = "127.0.0.1"
MIN_PASSWORD_LENGTH = 12
# Published with tally at one time or another: anyone can read them.
EXAMPLE_PASSWORDS = frozenset({"change-me", "admin", "password"})


class UnsafeFlower(Exception):
    """Flower would start open to misuse; the message says what to set."""


@dataclass(frozen=True)
class FlowerOptions:
    address: str
    basic_auth: list[str]


def flower_options(environ: Mapping[str, str]) -> FlowerOptions:
    """The address and logins Flower must use, from FLOWER_ADDRESS and FLOWER_BASIC_AUTH.

    Raises UnsafeFlower for a missing login, an empty, short or example password.
    """
    logins = [entry.strip() for entry in environ.get("FLOWER_BASIC_AUTH", "").split(",")]
    logins = [entry for entry in logins if entry]
    if not logins:
        raise UnsafeFlower(
            "FLOWER_BASIC_AUTH is empty: set user:password (make up writes one into .env)"
        )
    for login in logins:
        user, _, password = login.partition(":")
        if not user or not password:
            raise UnsafeFlower(f"FLOWER_BASIC_AUTH: {user or '(no user)'!r} has no password")
        if password in EXAMPLE_PASSWORDS:
            raise UnsafeFlower(
                f"FLOWER_BASIC_AUTH: {user!r} has the example password {password!r}; "
                "choose your own"
            )
        if len(password) < MIN_PASSWORD_LENGTH:
            raise UnsafeFlower(
                f"FLOWER_BASIC_AUTH: {user!r} has a password shorter than "
                f"{MIN_PASSWORD_LENGTH} characters"
            )
    return FlowerOptions(
        address=environ.get("FLOWER_ADDRESS") or DEFAULT_ADDRESS, basic_auth=logins
    )
