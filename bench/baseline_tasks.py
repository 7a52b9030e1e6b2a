"""The settle baseline: the least a correct settling task can do, in the same worker as tally.

One verify GET to the gateway (outside any lock, over a kept-alive session, as tally's client
does), then one transaction that locks the contestant's counter with `select_for_update` and
adds to it with `F()`. tally's task also claims its delivery, checks the payment, writes the
ledger entry, history and vote shard, and finishes the delivery; the ratio to this task is
what that costs.

Each bare task adds exactly one vote, so the counters' total counts the tasks that ran: that
is how the bench sees the drain finish and checks the baseline lost nothing.
The worker imports this module through `--include bench.baseline_tasks`.
"""

import json

import requests
from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from bench.baseline_models import BareCounter
from bench.environment import BASELINE_TABLE

_sessions: dict[str, requests.Session] = {}


@shared_task(name="bench.bare_settle", acks_late=True)
def bare_settle(reference: str, counter_id: int) -> None:
    """Verify one reference, then add its vote: the settle baseline."""
    _verify_and_add(reference, counter_id)


@shared_task(name="bench.bare_event", acks_late=True)
def bare_event(row_id: int) -> None:
    """What the baseline view enqueues: read the stored body, then settle as above.

    Trusting the body for the contestant is what tally must not do; the bare pipeline may,
    because only its cost is of interest. Ingest purges these messages, so only the
    end-to-end baseline runs them.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT raw_body FROM {BASELINE_TABLE} WHERE id = %s", [row_id])
        (raw_body,) = cursor.fetchone()
    data = json.loads(raw_body)["data"]
    _verify_and_add(data["reference"], data["metadata"]["contestant"])


def _verify_and_add(reference: str, counter_id: int) -> None:
    response = _session().get(
        f"{settings.PAYSTACK_BASE_URL}/transaction/verify/{reference}",
        timeout=settings.PAYSTACK_TIMEOUT,
    )
    response.raise_for_status()
    status = response.json()["data"]["status"]
    if status != "success":
        raise RuntimeError(f"the sandbox says {reference} is {status}, not success")
    with transaction.atomic():
        BareCounter.objects.select_for_update().filter(pk=counter_id).values_list(
            "pk", flat=True
        ).get()
        BareCounter.objects.filter(pk=counter_id).update(votes=F("votes") + 1)


def _session() -> requests.Session:
    """One keep-alive session per pool process, made after the fork."""
    session = _sessions.get("gateway")
    if session is None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {settings.PAYSTACK_SECRET_KEY}"
        _sessions["gateway"] = session
    return session
