"""The operator log (docs/contract.md, guarantee 9): every replay, reconcile, audit, decision
and prune is recorded with who, what, when and the result, from the admin and commands alike."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from io import StringIO

import pytest
import responses
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from ledger.models import OperatorAction, Payment
from ledger.operator_log import recorded
from ledger.services import settle_payment
from tests.factories import DeliveryFactory, PaymentFactory
from tests.helpers import success_for, verify_answer, verify_url, wait_until
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def silent() -> Iterator[socket.socket]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener


def only_action() -> OperatorAction:
    return OperatorAction.objects.get()


def test_an_admin_replay_is_recorded_with_the_user_and_what_it_touched(
    admin_client, enqueued, django_capture_on_commit_callbacks
):
    payment = PaymentFactory()
    delivery = DeliveryFactory(payment=payment, status="failed")

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:webhooks_delivery_replay", args=[delivery.pk]), {"post": "yes"}
        )

    action = only_action()
    assert (action.action, action.actor, action.via, action.outcome) == (
        "replay",
        "admin",
        "admin",
        "done",
    )
    assert action.counts["replayed"] == 1
    assert (action.delivery_ids, action.payment_references) == ([delivery.pk], [payment.reference])
    assert action.finished_at is not None
    page = admin_client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk]))
    assert reverse("admin:ledger_operatoraction_change", args=[action.pk]) in page.text


def test_a_decision_in_the_admin_is_recorded_even_when_refused(admin_client):
    payment = PaymentFactory()
    settle_payment(reference=payment.reference, verification=success_for(payment, amount=1))
    url = reverse("admin:ledger_payment_resolve", args=[payment.pk])

    admin_client.post(url, {"decision": "refunded", "note": "refunded on the dashboard"})

    action = only_action()
    assert (action.action, action.actor, action.outcome) == ("resolve", "admin", "done")
    assert action.arguments == {"decision": "refunded", "note": "refunded on the dashboard"}
    assert action.payment_references == [payment.reference]
    assert Payment.objects.get(pk=payment.pk).status == "reversed"


@pytest.mark.parametrize(
    ("command", "options", "action"),
    [
        ("replay_events", {"dry_run": True}, "replay_events"),
        ("reconcile", {"dry_run": True}, "reconcile"),
        ("prune_deliveries", {"dry_run": True}, "prune_deliveries"),
    ],
)
def test_a_command_is_recorded_with_its_actor_and_arguments(command, options, action):
    call_command(command, actor="ada", stdout=StringIO(), **options)

    recorded_action = only_action()
    assert (recorded_action.action, recorded_action.actor, recorded_action.via) == (
        action,
        "ada",
        "command",
    )
    assert recorded_action.dry_run
    assert recorded_action.outcome == "done"


def test_a_command_without_an_actor_records_the_operating_system_user():
    call_command("reconcile", dry_run=True, stdout=StringIO())

    assert only_action().actor != ""


def test_a_reconcile_records_what_it_checked(paystack):
    payment = PaymentFactory(votes=2)
    paystack.add(responses.GET, verify_url(payment.reference), json=verify_answer(payment))

    call_command("reconcile", actor="bo", stdout=StringIO())

    action = only_action()
    assert action.counts == {"checked": 1, "skipped": 0, "credited": 1}
    assert action.payment_references == [payment.reference]


def test_work_that_fails_leaves_a_failed_row_with_the_error():
    with (
        pytest.raises(ValueError),
        recorded(action="reconcile", actor="ada", via=OperatorAction.Via.COMMAND),
    ):
        raise ValueError("the gateway key is wrong")

    action = only_action()
    assert (action.outcome, action.error) == ("failed", "ValueError: the gateway key is wrong")
    assert action.finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_run_killed_mid_way_leaves_a_visible_unfinished_row(silent):
    """The row is committed before the work starts: a SIGKILL leaves it `running`."""
    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER'] or 'postgres'}@{database['HOST']}:"
        f"{database['PORT']}/{database['NAME']}",
        # A gateway that takes the connection and never answers: the run waits on its first
        # verify until it is killed.
        "PAYSTACK_BASE_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
        "PAYSTACK_TIMEOUT": "5",
    }
    PaymentFactory()
    run = subprocess.Popen(
        [sys.executable, "manage.py", "reconcile", "--actor", "night-shift"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: OperatorAction.objects.exists(), timeout=30)
        time.sleep(0.5)
        os.kill(run.pid, signal.SIGKILL)
    finally:
        run.wait(timeout=30)

    action = only_action()
    assert (action.action, action.actor, action.outcome) == ("reconcile", "night-shift", "running")
    assert action.finished_at is None


def test_the_log_is_read_only_in_the_admin_and_found_by_a_reference(admin_client):
    with recorded(action="replay", actor="ada", via=OperatorAction.Via.ADMIN) as record:
        record.touched(payments=["tly-abc"], deliveries=[42])
    action = only_action()
    listing = reverse("admin:ledger_operatoraction_changelist")

    found = admin_client.get(listing, {"q": "tly-abc"})
    by_delivery = admin_client.get(listing, {"q": "42"})
    other = admin_client.get(listing, {"q": "tly-zzz"})
    delete = admin_client.post(reverse("admin:ledger_operatoraction_delete", args=[action.pk]))

    assert "1 operator action" in found.text
    assert "1 operator action" in by_delivery.text
    assert "0 operator actions" in other.text
    assert delete.status_code == 403
    assert OperatorAction.objects.count() == 1
    assert Delivery.objects.count() == 0
