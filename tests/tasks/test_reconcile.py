"""Reconciliation and the reconcile command: pending payments verified and settled."""

from datetime import timedelta

import pytest
import responses
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from ledger.models import Payment
from tasks.reconcile import reconcile_payments
from tests.factories import PaymentFactory
from tests.helpers import counted, says, verify_url, votes_of

NOT_FOUND = {"status": False, "message": "Transaction reference not found."}


def created_ago(payment: Payment, age: timedelta) -> Payment:
    """created_at is auto_now_add: move it back with an UPDATE."""
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - age)
    payment.refresh_from_db()
    return payment


@pytest.mark.django_db
def test_reconcile_dry_run_lists_what_it_would_verify_and_changes_nothing(
    paystack, capsys, settings
):
    settings.VERIFY_COOLDOWN_SECONDS = 30
    pending = PaymentFactory(amount=15000)
    PaymentFactory(status=Payment.Status.FAILED)
    just_verified = PaymentFactory(verified_at=timezone.now() - timedelta(seconds=10))

    call_command("reconcile", dry_run=True)

    out = capsys.readouterr().out
    assert f"{pending.reference}  " in out
    assert "  15000 NGN" in out
    assert f"{just_verified.reference}  " in out and "(skip: verified at" in out
    assert (
        "reconcile --dry-run: would check 1 pending payment(s); 1 verified moments ago would "
        "be skipped; nothing was verified or changed"
    ) in out
    assert len(paystack.calls) == 0
    assert Payment.objects.get(pk=pending.pk).verified_at is None
    assert Payment.objects.filter(status=Payment.Status.PENDING).count() == 2


@pytest.mark.django_db
def test_reconcile_settles_pending_payments_and_prints_the_summary(paystack, capsys):
    paid = PaymentFactory(votes=4)
    abandoned, failed, unknown = PaymentFactory(), PaymentFactory(), PaymentFactory()
    says(paystack, paid)
    says(paystack, abandoned, status="abandoned")
    says(paystack, failed, status="failed")
    paystack.add(responses.GET, verify_url(unknown.reference), status=404, json=NOT_FOUND)
    credited_before = counted("tally_payments_settled_total", outcome="credited")
    votes_before = counted("tally_votes_credited_total")
    verified_before = counted("tally_gateway_verify_seconds_count", outcome="success")

    call_command("reconcile")

    out = capsys.readouterr().out
    assert "reconcile: 4 pending payment(s); verifying" in out
    assert "reconcile: 4 checked: credited 1, failed 1, not_found 1, still_pending 1" in out
    statuses = dict(Payment.objects.values_list("reference", "status"))
    assert statuses == {
        paid.reference: "credited",
        abandoned.reference: "pending",
        failed.reference: "failed",
        unknown.reference: "pending",
    }
    assert votes_of(paid.contestant_id) == 4
    assert counted("tally_payments_settled_total", outcome="credited") == credited_before + 1
    assert counted("tally_votes_credited_total") == votes_before + 4
    assert counted("tally_gateway_verify_seconds_count", outcome="success") == verified_before + 1


@pytest.mark.django_db
def test_reconcile_since_takes_only_payments_created_within_the_window(paystack, capsys):
    recent = PaymentFactory()
    old = created_ago(PaymentFactory(), timedelta(days=3))
    says(paystack, recent)
    says(paystack, old)

    call_command("reconcile", since="2d")

    assert "reconcile: 1 checked: credited 1" in capsys.readouterr().out
    assert Payment.objects.get(pk=recent.pk).status == Payment.Status.CREDITED
    assert Payment.objects.get(pk=old.pk).status == Payment.Status.PENDING
    assert [call.request.url for call in paystack.calls] == [verify_url(recent.reference)]


@pytest.mark.django_db
def test_reconcile_prints_progress_on_long_runs(paystack, capsys, monkeypatch):
    monkeypatch.setattr("tasks.management.commands.reconcile.PROGRESS_EVERY", 2)
    for payment in [PaymentFactory() for _ in range(5)]:
        says(paystack, payment)

    call_command("reconcile")

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "reconcile: 5 pending payment(s); verifying",
        "reconcile: 2/5 checked: credited 2",
        "reconcile: 4/5 checked: credited 4",
        "reconcile: 5 checked: credited 5",
    ]


@pytest.mark.django_db
def test_reconcile_fails_a_never_paid_payment_once_expired_and_counts_it(paystack, capsys):
    never_paid = created_ago(PaymentFactory(), timedelta(days=2))
    paystack.add(responses.GET, verify_url(never_paid.reference), status=404, json=NOT_FOUND)
    failed_before = counted("tally_payments_settled_total", outcome="failed")

    call_command("reconcile")

    assert "reconcile: 1 checked: failed 1" in capsys.readouterr().out
    assert Payment.objects.get(pk=never_paid.pk).status == Payment.Status.FAILED
    assert counted("tally_payments_settled_total", outcome="failed") == failed_before + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("soon", "--since: 'soon' is not a duration"),
        ("0h", "--since: '0h' is an empty window"),
        ("999999d", "--since: '999999d' reaches back before the calendar starts"),
    ],
)
def test_reconcile_bad_since_raises_command_error_with_returncode_2(paystack, since, message):
    PaymentFactory()

    with pytest.raises(CommandError, match=message) as error:
        call_command("reconcile", since=since)

    assert error.value.returncode == 2
    assert len(paystack.calls) == 0


@pytest.mark.django_db
def test_reconcile_goes_on_past_a_payment_the_gateway_refuses(paystack, capsys):
    refused, paid = PaymentFactory(), PaymentFactory(votes=2)
    paystack.add(
        responses.GET,
        verify_url(refused.reference),
        status=401,
        json={"status": False, "message": "Invalid key"},
    )
    says(paystack, paid)

    call_command("reconcile")

    assert "credited 1, rejected 1" in capsys.readouterr().out
    assert Payment.objects.get(pk=refused.pk).status == "pending"
    assert Payment.objects.get(pk=paid.pk).status == "credited"


@pytest.mark.django_db
def test_reconcile_checks_the_least_recently_verified_first(paystack):
    checked_long_ago, never_checked = PaymentFactory(), PaymentFactory()
    Payment.objects.filter(pk=checked_long_ago.pk).update(
        verified_at=timezone.now() - timedelta(hours=1),
        created_at=timezone.now() - timedelta(days=1),
    )
    says(paystack, checked_long_ago)
    says(paystack, never_checked)

    report = reconcile_payments(created_before=timezone.now(), limit=1)

    assert report.checked == 1
    assert Payment.objects.get(pk=never_checked.pk).status == "credited"
    assert Payment.objects.get(pk=checked_long_ago.pk).status == "pending"
