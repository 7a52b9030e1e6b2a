"""The pipeline with the gateway mocked at the HTTP boundary: tasks run eagerly in-process."""

from datetime import timedelta
from unittest import mock

import pytest
import responses
from django.utils import timezone

from ledger.models import LedgerEntry, Payment
from tasks.deliveries import process_delivery
from tasks.retry import MAX_RETRIES, backoff_seconds
from tasks.verification import verify_payment
from tests.factories import DeliveryFactory, PaymentFactory
from tests.helpers import verify_answer, votes_of
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db

VERIFY = "http://paystack.test/transaction/verify/"
NOT_FOUND = {"status": False, "message": "Transaction reference not found."}


@pytest.fixture
def gateway():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def says(gateway, payment, **changes) -> None:
    """The gateway's verify answers for this payment: paid, unless `changes` say otherwise."""
    gateway.add(responses.GET, VERIFY + payment.reference, json=verify_answer(payment, **changes))


def process(delivery: Delivery) -> Delivery:
    process_delivery.apply(args=(delivery.pk,))
    delivery.refresh_from_db()
    return delivery


def test_charge_success_verified_credits_and_marks_processed(gateway):
    payment = PaymentFactory(votes=3)
    says(gateway, payment)

    delivery = process(DeliveryFactory(payment=payment))

    assert (delivery.status, delivery.outcome, delivery.attempts) == ("processed", "credited", 1)
    assert delivery.processed_at is not None
    assert Payment.objects.get(pk=payment.pk).status == "credited"
    assert votes_of(payment.contestant_id) == 3
    assert len(gateway.calls) == 1


@pytest.mark.parametrize("change", [{"amount": 1}, {"currency": "USD"}])
def test_mismatched_amount_or_currency_flags_without_votes(gateway, change):
    payment = PaymentFactory(votes=3)
    says(gateway, payment, **change)

    delivery = process(DeliveryFactory(payment=payment))

    assert delivery.outcome == "flagged"
    assert Payment.objects.get(pk=payment.pk).status == "flagged"
    assert votes_of(payment.contestant_id) == 0


def test_failed_charge_fails_the_payment(gateway):
    payment = PaymentFactory()
    says(gateway, payment, status="failed")

    delivery = process(DeliveryFactory(payment=payment))

    assert delivery.outcome == "failed"
    assert Payment.objects.get(pk=payment.pk).status == "failed"
    assert votes_of(payment.contestant_id) == 0


def test_abandoned_leaves_the_payment_pending_for_reconciliation(gateway):
    payment = PaymentFactory()
    says(gateway, payment, status="abandoned")

    delivery = process(DeliveryFactory(payment=payment))

    assert (delivery.status, delivery.outcome) == ("processed", "still_pending")
    assert Payment.objects.get(pk=payment.pk).status == "pending"


def test_gateway_500_then_success_is_retried_and_credits_once(gateway):
    payment = PaymentFactory(votes=2)
    gateway.add(responses.GET, VERIFY + payment.reference, status=500, json={"status": False})
    says(gateway, payment)

    delivery = process(DeliveryFactory(payment=payment))

    assert (delivery.status, delivery.outcome, delivery.attempts) == ("processed", "credited", 2)
    assert votes_of(payment.contestant_id) == 2
    assert LedgerEntry.objects.filter(payment=payment).count() == 1


def test_gateway_down_through_every_retry_fails_the_delivery_and_keeps_the_payment_pending(
    gateway,
):
    payment = PaymentFactory()
    gateway.add(responses.GET, VERIFY + payment.reference, status=503, json={"status": False})

    delivery = process(DeliveryFactory(payment=payment))

    assert delivery.status == "failed"
    assert delivery.attempts == MAX_RETRIES + 1
    assert "503" in delivery.last_error
    assert Payment.objects.get(pk=payment.pk).status == "pending"


def test_reference_unknown_to_the_gateway_fails_the_delivery_at_once(gateway):
    payment = PaymentFactory()
    gateway.add(responses.GET, VERIFY + payment.reference, status=404, json=NOT_FOUND)

    delivery = process(DeliveryFactory(payment=payment))

    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "not found" in delivery.last_error
    assert Payment.objects.get(pk=payment.pk).status == "pending"


def test_refund_after_credit_reverses_once(gateway):
    payment = PaymentFactory(votes=4)
    says(gateway, payment)
    process(DeliveryFactory(payment=payment))
    gateway.replace(
        responses.GET, VERIFY + payment.reference, json=verify_answer(payment, status="reversed")
    )

    first = process(DeliveryFactory(payment=payment, event="refund.processed"))
    second = process(DeliveryFactory(payment=payment, event="refund.processed"))

    assert (first.outcome, second.outcome) == ("reversed", "already_settled")
    assert Payment.objects.get(pk=payment.pk).status == "reversed"
    assert votes_of(payment.contestant_id) == 0
    assert LedgerEntry.objects.filter(payment=payment).count() == 2


def test_refund_before_success_reverses_with_no_votes_ever(gateway):
    payment = PaymentFactory(votes=4)
    says(gateway, payment, status="reversed")

    refund = process(DeliveryFactory(payment=payment, event="refund.processed"))
    charge = process(DeliveryFactory(payment=payment))

    assert (refund.outcome, charge.outcome) == ("reversed", "already_settled")
    assert votes_of(payment.contestant_id) == 0
    assert not LedgerEntry.objects.exists()


def test_reference_that_is_not_ours_is_ignored_without_a_gateway_call(gateway):
    delivery = process(DeliveryFactory(reference="T-someone-elses-ref"))

    assert (delivery.status, delivery.outcome) == ("ignored", "reference is not ours")
    assert len(gateway.calls) == 0


def test_event_type_we_do_not_act_on_is_ignored(gateway):
    delivery = process(DeliveryFactory(event="transfer.success", reference="TRF_1"))

    assert delivery.status == "ignored"
    assert "transfer.success" in delivery.outcome
    assert len(gateway.calls) == 0


def test_a_claimed_or_finished_delivery_is_skipped_without_a_gateway_call(gateway):
    payment = PaymentFactory()
    leased = DeliveryFactory(
        payment=payment,
        status="processing",
        stale_after=timezone.now() + timedelta(seconds=60),
    )
    finished = DeliveryFactory(payment=payment, status="processed")

    assert process_delivery.apply(args=(leased.pk,)).get() == "skipped"
    assert process_delivery.apply(args=(finished.pk,)).get() == "skipped"
    assert len(gateway.calls) == 0
    leased.refresh_from_db()
    assert leased.attempts == 0


def test_an_expired_lease_is_claimed_again(gateway):
    payment = PaymentFactory()
    says(gateway, payment)
    delivery: Delivery = DeliveryFactory(
        payment=payment, status="processing", attempts=1, stale_after=timezone.now()
    )

    delivery = process(delivery)

    assert (delivery.status, delivery.attempts) == ("processed", 2)


def test_a_settled_payment_is_not_verified_again(gateway):
    payment = PaymentFactory()
    says(gateway, payment)
    process(DeliveryFactory(payment=payment))

    second = process(DeliveryFactory(payment=payment, dedup_key="x" * 64))

    assert second.outcome == "already_settled"
    assert len(gateway.calls) == 1


def test_rate_limit_retry_after_is_the_floor_of_the_backoff():
    assert all(backoff_seconds(0, retry_after=30) >= 30 for _ in range(20))
    assert all(backoff_seconds(20, retry_after=None) <= 600 for _ in range(20))


def test_verify_payment_task_settles_like_a_delivery(gateway):
    payment = PaymentFactory(votes=2)
    says(gateway, payment)

    assert verify_payment.apply(args=(payment.reference,)).get() == "credited"
    assert verify_payment.apply(args=(payment.reference,)).get() == "already_settled"
    assert votes_of(payment.contestant_id) == 2
    assert len(gateway.calls) == 1


@pytest.mark.parametrize("batch_size", [1, 32])
def test_the_credit_and_the_processed_mark_commit_together(gateway, settings, batch_size):
    settings.SETTLE_BATCH_SIZE = batch_size
    payment = PaymentFactory(votes=3)
    says(gateway, payment)
    delivery = DeliveryFactory(payment=payment)

    with (
        mock.patch.object(Delivery.objects, "finish", side_effect=RuntimeError("db gone")),
        mock.patch.object(Delivery.objects, "finish_together", side_effect=RuntimeError("db gone")),
        pytest.raises(RuntimeError),
    ):
        process_delivery.apply(args=(delivery.pk,), throw=True)

    assert Payment.objects.get(pk=payment.pk).status == "pending"
    assert not LedgerEntry.objects.filter(payment=payment).exists()
    assert votes_of(payment.contestant_id) == 0
