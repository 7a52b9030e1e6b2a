"""Durations typed by operators on the command line (`--since 2h`), shared by the commands."""

import re
from datetime import datetime, timedelta

from django.core.management.base import CommandError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_PART = re.compile(r"(\d+)([smhd])")
_WHOLE = re.compile(r"(?:\d+[smhd])+")
_EXAMPLES = "45s, 30m, 2h, 2d or 1h30m"


def parse_duration(text: str) -> timedelta:
    """`30m`, `2h`, `2d`, `45s` or a sum such as `1h30m` as a timedelta.

    Raises ValueError naming the accepted forms, so a command can pass the message on as is.
    Bare numbers are refused: "2" could mean seconds, hours or days, and guessing wrong would
    replay or reconcile the wrong window.
    """
    compact = text.strip().lower()
    if not _WHOLE.fullmatch(compact):
        raise ValueError(f"{text!r} is not a duration; use a number and a unit: {_EXAMPLES}")
    try:
        duration = sum(
            (timedelta(**{_UNITS[unit]: int(count)}) for count, unit in _PART.findall(compact)),
            timedelta(),
        )
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None
    if not duration:
        raise ValueError(f"{text!r} is an empty window; use a positive duration: {_EXAMPLES}")
    return duration


def since_option(since: str | None, *, now: datetime) -> datetime | None:
    """The start of a command's `--since` window (None: no window), or exit 2 saying why."""
    if since is None:
        return None
    try:
        return now - parse_duration(since)
    except ValueError as exc:
        raise CommandError(f"--since: {exc}", returncode=2) from None
    except OverflowError:  # a valid duration that reaches back past year 1
        raise CommandError(
            f"--since: {since!r} reaches back before the calendar starts", returncode=2
        ) from None
