"""Tiny helpers that read settings from the environment and fail loudly."""

import os
import re

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def env_required(name: str, *, unless_debug: bool) -> str:
    value = os.environ.get(name, "")
    if not value and not unless_debug:
        raise ImproperlyConfigured(f"{name} is required unless DEBUG=1")
    return value


_RATE = re.compile(r"([1-9][0-9]*)/([smhd])")


def env_rate(name: str, default: str) -> str:
    """A rate such as `20/m`: a count per second, minute, hour or day."""
    value = os.environ.get(name) or default
    if _RATE.fullmatch(value) is None:
        raise ImproperlyConfigured(
            f"{name} must be a count per s, m, h or d such as 20/m, not {value!r}"
        )
    return value
