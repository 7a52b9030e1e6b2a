"""The bench database: created fresh, migrated, emptied between scenarios, and filled fast.

Rows are written with bulk inserts before any clock starts; what a scenario times is only what
tally's processes do.
"""

import subprocess
import sys
from collections.abc import Iterable
from datetime import timedelta

import psycopg
from psycopg import sql

from bench.environment import (
    BASELINE_COUNTER_TABLE,
    BASELINE_TABLE,
    DATABASE_NAME,
    POSTGRES_SERVER,
)
from bench.events import FIRST_GATEWAY_ID, PaidPayment, charge_success
from devstack.processes import REPO

PRICE_PER_VOTE = 5000
CURRENCY = "NGN"


def recreate_database() -> None:
    """Drop `tally_bench` (disconnecting whatever still uses it) and create it empty."""
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        name = sql.Identifier(DATABASE_NAME)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))


def migrate(env: dict[str, str]) -> None:
    """`manage.py migrate` as its own process, as a deploy runs it."""
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py migrate failed:\n{done.stdout}\n{done.stderr}")


def create_baseline_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {BASELINE_TABLE} (id bigserial PRIMARY KEY, raw_body text NOT NULL)"
        )
        cursor.execute(
            f"CREATE TABLE {BASELINE_COUNTER_TABLE} "
            "(id bigint PRIMARY KEY, votes bigint NOT NULL DEFAULT 0)"
        )


def empty_tables() -> None:
    """Every table tally and the baselines write, emptied: the next run starts from nothing.

    All of the ledger's and webhooks' tables, whatever their models are today, so a new
    table (vote shards, say) is emptied too without the bench being told.
    """
    from django.apps import apps
    from django.db import connection

    tables = [
        model._meta.db_table
        for label in ("ledger", "webhooks")
        for model in apps.get_app_config(label).get_models()
    ]
    tables += [BASELINE_TABLE, BASELINE_COUNTER_TABLE]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def make_counters(count: int) -> list[int]:
    """`count` zeroed baseline counters, one per contestant of a bare run; their ids."""
    from bench.baseline_models import BareCounter

    counters = BareCounter.objects.bulk_create(BareCounter(pk=n + 1) for n in range(count))
    return [counter.pk for counter in counters]


def make_contestants(count: int) -> list[int]:
    """An open contest with `count` contestants; their ids."""
    from django.utils import timezone

    from ledger.models import Contest, Contestant

    now = timezone.now()
    contest = Contest.objects.create(
        name="Bench",
        slug="bench",
        price_per_vote=PRICE_PER_VOTE,
        currency=CURRENCY,
        opens_at=now - timedelta(days=1),
        closes_at=now + timedelta(days=30),
    )
    contestants = Contestant.objects.bulk_create(
        Contestant(contest=contest, name=f"Act {n}", slug=f"act-{n}") for n in range(count)
    )
    return [contestant.pk for contestant in contestants]


def payment_specs(count: int, contestant_ids: list[int], *, label: str) -> list[PaidPayment]:
    """`count` payments dealt round-robin over the contestants, 1 to 4 votes each."""
    return [
        PaidPayment(
            reference=f"tly-bench-{label}-{n:07d}",
            contestant_id=contestant_ids[n % len(contestant_ids)],
            votes=1 + n % 4,
            amount=(1 + n % 4) * PRICE_PER_VOTE,
            currency=CURRENCY,
            email=f"fan{n}@example.com",
        )
        for n in range(count)
    ]


def insert_payments(payments: list[PaidPayment]) -> None:
    """The payments as tally's checkout leaves them: `pending`, waiting for the gateway."""
    from ledger.models import Payment

    Payment.objects.bulk_create(
        (
            Payment(
                reference=p.reference,
                contestant_id=p.contestant_id,
                votes=p.votes,
                amount=p.amount,
                currency=p.currency,
                email=p.email,
            )
            for p in payments
        ),
        batch_size=2000,
    )


def store_deliveries(payments: Iterable[PaidPayment]) -> list[int]:
    """Each payment's charge.success stored as tally stores it (`queued`); the delivery ids.

    The identity and columns come from tally's own parser, so the worker cannot tell these
    rows from ones the endpoint wrote. Enqueueing is left to the caller.
    """
    from django.conf import settings
    from django.utils import timezone

    from webhooks.events import parse_event
    from webhooks.models import Delivery

    now = timezone.now()
    rows = []
    for n, payment in enumerate(payments):
        parsed = parse_event(charge_success(payment, gateway_id=FIRST_GATEWAY_ID + n).body)
        rows.append(
            Delivery(
                dedup_key=parsed.dedup_key,
                event=parsed.event,
                reference=parsed.reference,
                gateway_id=parsed.gateway_id,
                raw_body=parsed.text,
                payload={"event": parsed.event, "data": parsed.data},  # the whole document
                source_ip="127.0.0.1",
                status=Delivery.Status.QUEUED,
                received_at=now,
                last_delivered_at=now,
                stale_after=now + timedelta(seconds=settings.STUCK_AFTER_SECONDS),
            )
        )
    return [row.pk for row in Delivery.objects.bulk_create(rows, batch_size=2000)]


# What a log of any size holds that someone may act on: the /metrics gauges read only these.
SEEDED_QUEUED = 20
SEEDED_FAILED = 10


def seed_delivery_log(count: int) -> None:
    """`count` deliveries in one INSERT … SELECT generate_series, as a long-running log looks:
    SEEDED_QUEUED queued and SEEDED_FAILED failed, one in a hundred ignored, the rest
    processed. Then VACUUM ANALYZE, as autovacuum would have done to a table that old (its
    visibility map lets the gauges' index-only scan skip the heap), and a CHECKPOINT, so the
    pages just written are not flushed while the scenario times its scrapes."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO webhooks_delivery (dedup_key, event, reference, gateway_id, raw_body,
                payload, source_ip, status, attempts, outcome, last_error, received_at,
                processed_at, delivery_count, last_delivered_at, stale_after)
            SELECT md5('seed' || n), 'charge.success', 'tly-seed-' || n, n::text,
                '{"event":"charge.success","data":{"reference":"tly-seed-' || n || '"}}',
                jsonb_build_object('event', 'charge.success',
                                   'data', jsonb_build_object('reference', 'tly-seed-' || n)),
                '52.31.139.75',
                CASE WHEN n <= %(queued)s THEN 'queued'
                     WHEN n <= %(queued)s + %(failed)s THEN 'failed'
                     WHEN n %% 100 = 0 THEN 'ignored'
                     ELSE 'processed' END,
                1, 'credited', '',
                now() - (n || ' seconds')::interval, now(), 1, now(), now() + interval '1 hour'
            FROM generate_series(1, %(count)s) AS n
            """,
            {"count": count, "queued": SEEDED_QUEUED, "failed": SEEDED_FAILED},
        )
        cursor.execute("VACUUM ANALYZE webhooks_delivery")
        cursor.execute("CHECKPOINT")
