"""One run at a time for periodic jobs, whichever beat replica or operator starts them."""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def single_run(name: str) -> Iterator[bool]:
    """Hold a PostgreSQL session advisory lock named `name` for the block; yields False (and
    holds nothing) when another run holds it. The lock goes with the session, so a killed
    process never leaves it taken."""
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        taken = bool(cursor.fetchone()[0])
    try:
        yield taken
    finally:
        if taken:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
