"""Refund, dispute and late-payment events through process_delivery, the reconcile run and
the gateway audit, with the gateway mocked at the HTTP boundary."""

import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
import responses
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from ledger.models import Dispute, Payment, Refund
from ledger.services import expire_payment, settle_payment
from tasks.deliveries import process_delivery
from tasks.locks import single_run
from tasks.reconcile import reconcile_payments
from tasks.retry import MAX_RETRIES
from tests.factories import DeliveryFactory, PaymentFactory
from tests.helpers import success_for, verify_answer, votes_of
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db

BASE = "http://paystack.test"
GATEWAY_ID = 4_099_260_516


@pytest.fixture
def gateway():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def says(gateway, payment, **changes) -> None:
    gateway.add(
        responses.GET,
        f"{BASE}/transaction/verify/{payment.reference}",
        json=verify_answer(payment, **changes),
    )


def refunds_say(gateway, payment, *statuses: str) -> None:
    """GET /refund?transaction=<id>: the gateway's own refund records of the payment."""
    records = [
        {
            "id": 900 + n,
            "transaction": GATEWAY_ID,
            "transaction_reference": payment.reference,
            "amount": 100,
            "currency": "NGN",
            "status": status,
        }
        for n, status in enumerate(statuses)
    ]
    gateway.add(
        responses.GET,
        f"{BASE}/refund",
        json={"status": True, "message": "Refunds retrieved", "data": records, "meta": {}},
    )


def credited(votes: int = 3) -> Payment:
    payment = PaymentFactory(votes=votes)
    settle_payment(reference=payment.reference, verification=success_for(payment))
    payment.refresh_from_db()
    return payment


def delivered(event: str, payment: Payment, **data: object) -> Delivery:
    """A stored delivery of `event` about `payment`, processed now by the task."""
    if event.startswith("refund."):
        fields = {"transaction_reference": payment.reference, "refund_reference": None, **data}
    elif event.startswith("charge.dispute."):
        fields = {"id": 7001, "transaction": {"reference": payment.reference}, **data}
    else:
        fields = {"reference": payment.reference, **data}
    payload = {"event": event, "data": fields}
    delivery = DeliveryFactory(
        event=event, reference=payment.reference, payload=payload, raw_body=json.dumps(payload)
    )
    process_delivery.apply(args=(delivery.pk,))
    delivery.refresh_from_db()
    return delivery


def test_charge_success_for_a_payment_closed_as_failed_verifies_and_credits(gateway):
    payment = PaymentFactory(votes=2)
    expire_payment(reference=payment.reference, reason="abandoned and expired")
    says(gateway, payment)

    delivery = delivered("charge.success", payment)

    assert (delivery.status, delivery.outcome) == ("processed", "credited")
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.CREDITED
    assert votes_of(payment.contestant_id) == 2
    assert len(gateway.calls) == 1


def test_refund_processed_that_verify_shows_reversed_takes_the_votes_back_once(gateway):
    payment = credited(votes=3)
    says(gateway, payment, status="reversed")

    first = delivered("refund.processed", payment, refund_reference="r-1", amount="15000")
    again = delivered("refund.processed", payment, refund_reference="r-1", amount="15000")

    assert (first.outcome, again.outcome) == ("reversed", "already_settled")
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.REVERSED
    assert votes_of(payment.contestant_id) == 0
    refund = Refund.objects.get()
    assert (refund.refund_reference, refund.status, refund.amount) == ("r-1", "processed", 15000)
    assert refund.confirmed_at is not None


def test_a_partial_refund_confirmed_by_the_refund_record_takes_every_vote_back(gateway):
    payment = credited(votes=3)
    says(gateway, payment)  # verify still says success: a partial refund
    refunds_say(gateway, payment, "processed")

    delivery = delivered("refund.processed", payment, refund_reference="r-2", amount="100")

    assert delivery.outcome == "reversed"
    assert votes_of(payment.contestant_id) == 0


def test_a_refund_the_gateway_does_not_confirm_is_retried_then_left_to_reconciliation(gateway):
    payment = credited(votes=3)
    says(gateway, payment)
    refunds_say(gateway, payment, "pending")

    delivery = delivered("refund.processed", payment, refund_reference="r-3", amount="15000")

    assert (delivery.status, delivery.attempts) == ("processed", MAX_RETRIES + 1)
    assert delivery.outcome == "unconfirmed; left to reconciliation"
    assert votes_of(payment.contestant_id) == 3  # the gateway still says paid
    payment.refresh_from_db()
    assert payment.refund_recorded_at is not None

    # Later the gateway catches up; reconciliation finds the recorded refund and confirms it.
    gateway.reset()
    says(gateway, payment, status="reversed")
    Payment.objects.filter(pk=payment.pk).update(verified_at=None)
    report = reconcile_payments(created_before=timezone.now() + timedelta(minutes=1))

    assert report.outcomes == {"reversed": 1}
    assert votes_of(payment.contestant_id) == 0


def test_reconcile_asks_a_person_about_a_refund_unconfirmed_past_the_expiry(gateway, settings):
    payment = credited(votes=3)
    says(gateway, payment)
    refunds_say(gateway, payment, "pending")
    delivered("refund.pending", payment)
    long_ago = timezone.now() - timedelta(seconds=settings.PAYMENT_EXPIRES_AFTER_SECONDS + 1)
    Payment.objects.filter(pk=payment.pk).update(refund_recorded_at=long_ago, verified_at=None)

    report = reconcile_payments(created_before=timezone.now())

    assert report.outcomes == {"refund_flagged": 1}
    payment.refresh_from_db()
    assert (payment.status, payment.attention) == ("credited", "refund_unconfirmed")


def test_a_refund_recorded_before_the_charge_settles_means_the_charge_never_credits(gateway):
    payment = PaymentFactory(votes=2)
    pending = delivered("refund.pending", payment)
    says(gateway, payment)

    charge = delivered("charge.success", payment)

    assert (pending.outcome, charge.outcome) == ("refund_pending", "still_pending")
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.PENDING
    assert votes_of(payment.contestant_id) == 0


def test_refund_needs_attention_flags_without_calling_the_gateway(gateway):
    payment = PaymentFactory()

    delivery = delivered("refund.needs-attention", payment, id="trf_1", amount=15000)

    assert delivery.outcome == "refund_needs-attention"
    assert Payment.objects.get(pk=payment.pk).attention == "refund_needs_attention"
    assert len(gateway.calls) == 0


def test_a_lost_dispute_opens_then_takes_the_votes_back(gateway):
    payment = credited(votes=4)

    opened = delivered("charge.dispute.create", payment)
    assert opened.outcome == "dispute_open"
    assert votes_of(payment.contestant_id) == 4
    says(gateway, payment, status="reversed")
    resolved = delivered("charge.dispute.resolve", payment, resolution="merchant-accepted")

    assert resolved.outcome == "reversed"
    assert Dispute.objects.get().outcome == Dispute.Outcome.REVERSED
    assert votes_of(payment.contestant_id) == 0


def test_an_unreadable_200_from_the_gateway_is_retried_then_credits(gateway):
    payment = PaymentFactory(votes=2)
    gateway.add(
        responses.GET,
        f"{BASE}/transaction/verify/{payment.reference}",
        body="<html>502 from a proxy</html>",
        status=200,
    )
    says(gateway, payment)

    delivery = delivered("charge.success", payment)

    assert (delivery.status, delivery.outcome, delivery.attempts) == ("processed", "credited", 2)
    assert votes_of(payment.contestant_id) == 2


# --- the gateway audit ---------------------------------------------------------------------------


def listing(gateway, status: str, *payments_and_changes: tuple[Payment, dict]) -> None:
    items = [
        verify_answer(p, id=GATEWAY_ID + p.pk, **changes)["data"]
        for p, changes in payments_and_changes
    ]
    gateway.add(
        responses.GET,
        f"{BASE}/transaction",
        match=[responses.matchers.query_param_matcher({"status": status}, strict_match=False)],
        json={"status": True, "message": "ok", "data": items, "meta": {"pageCount": 1}},
    )


def test_audit_reverses_a_refund_whose_webhook_never_came_and_settles_a_late_payment(gateway):
    refunded, late = credited(votes=3), PaymentFactory(votes=2)
    expire_payment(reference=late.reference, reason="abandoned and expired")
    listing(gateway, "reversed", (refunded, {"status": "reversed"}))
    listing(gateway, "success", (late, {}), (credited(votes=1), {}))
    says(gateway, refunded, status="reversed")
    says(gateway, late)
    out = StringIO()

    call_command("audit_gateway", "--since", "7d", stdout=out)

    assert Payment.objects.get(pk=refunded.pk).status == Payment.Status.REVERSED
    assert Payment.objects.get(pk=late.pk).status == Payment.Status.CREDITED
    assert votes_of(refunded.contestant_id) == 0
    summary = out.getvalue().splitlines()[-1]
    assert summary == (
        "audit_gateway: 3 listed, 3 ours: agrees 1, payment_credited 1, reversal_reversed 1"
    )


def test_audit_dry_run_changes_nothing_and_verifies_nothing(gateway):
    refunded = credited(votes=3)
    listing(gateway, "reversed", (refunded, {"status": "reversed"}))
    listing(gateway, "success")
    out = StringIO()

    call_command("audit_gateway", "--dry-run", stdout=out)

    assert Payment.objects.get(pk=refunded.pk).status == Payment.Status.CREDITED
    assert "would_reverse 1" in out.getvalue()
    assert not any("/verify/" in call.request.url for call in gateway.calls)


@pytest.mark.django_db(transaction=True)
def test_a_second_audit_while_one_runs_does_nothing(gateway):
    out = StringIO()

    def run_beside() -> None:
        # Another thread is another database session: the lock is per session.
        try:
            call_command("audit_gateway", stdout=out)
        finally:
            connection.close()

    with single_run("tally.audit_gateway") as taken:
        assert taken
        thread = threading.Thread(target=run_beside)
        thread.start()
        thread.join()

    assert "another audit_gateway run is in progress; nothing done" in out.getvalue()
    assert len(gateway.calls) == 0
