"""Votes stand on money the gateway still holds: late payments, refunds, chargebacks, and a
person's decision (docs/contract.md, payment statuses; guarantees 1 and 2)."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from ledger.models import Dispute, LedgerEntry, Payment, Refund, VoteShard
from ledger.selectors import contestants_of
from ledger.services import (
    PAID_AFTER_CLOSE,
    PAID_AFTER_FAILED,
    CannotResolve,
    Decision,
    LedgerOutOfBalance,
    Outcome,
    expire_payment,
    flag_unconfirmed_refund,
    open_dispute,
    record_refund,
    refund_overdue,
    resolve_attention,
    resolve_dispute,
    reverse_payment,
    settle_payment,
)
from paystack.types import RefundNotice
from tests.factories import PaymentFactory
from tests.helpers import success_for, votes_of

pytestmark = pytest.mark.django_db


def credited(**fields) -> Payment:
    """A payment credited through the service, as a worker would."""
    payment = PaymentFactory(**fields)
    settle_payment(reference=payment.reference, verification=success_for(payment))
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CREDITED
    return payment


def ledger_clean() -> str:
    call_command("check_ledger")  # exits 1 (SystemExit) when out of balance
    return "clean"


# --- paid after we gave up ---------------------------------------------------------------------


def test_a_failed_payment_paid_later_is_credited_once_with_the_reason():
    payment = PaymentFactory(votes=3)
    expire_payment(reference=payment.reference, reason="abandoned and expired")

    first = settle_payment(reference=payment.reference, verification=success_for(payment))
    second = settle_payment(reference=payment.reference, verification=success_for(payment))

    assert (first.outcome, second.outcome) == (Outcome.CREDITED, Outcome.ALREADY_SETTLED)
    assert votes_of(payment.contestant_id) == 3
    last = payment.transitions.latest("id")
    assert (last.from_status, last.to_status, last.reason) == (
        "failed",
        "credited",
        PAID_AFTER_FAILED,
    )
    assert ledger_clean()


def test_a_failed_payment_paid_after_the_contest_closed_is_flagged_for_a_refund():
    payment = PaymentFactory(votes=3)
    expire_payment(reference=payment.reference, reason="abandoned and expired")
    after_close = payment.contestant.contest.closes_at + timedelta(minutes=1)

    settlement = settle_payment(
        reference=payment.reference, verification=success_for(payment, paid_at=after_close)
    )

    assert settlement.outcome == Outcome.FLAGGED
    payment.refresh_from_db()
    assert (payment.status, payment.attention) == ("flagged", "paid_after_close")
    assert payment.reason == PAID_AFTER_CLOSE
    assert votes_of(payment.contestant_id) == 0


def test_a_pending_payment_paid_after_the_close_is_flagged_and_one_paid_before_counts():
    late, on_time = PaymentFactory(), PaymentFactory()
    closes_at = late.contestant.contest.closes_at

    settle_payment(
        reference=late.reference,
        verification=success_for(late, paid_at=closes_at + timedelta(seconds=1)),
    )
    settle_payment(
        reference=on_time.reference,
        verification=success_for(on_time, paid_at=closes_at - timedelta(seconds=1)),
    )

    assert Payment.objects.get(pk=late.pk).status == Payment.Status.FLAGGED
    assert Payment.objects.get(pk=on_time.pk).status == Payment.Status.CREDITED


def test_a_failed_payment_the_gateway_still_calls_failed_stays_failed():
    payment = PaymentFactory()
    expire_payment(reference=payment.reference, reason="abandoned and expired")

    settlement = settle_payment(
        reference=payment.reference, verification=success_for(payment, status="abandoned")
    )

    assert settlement.outcome == Outcome.ALREADY_SETTLED
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.FAILED


# --- refunds -----------------------------------------------------------------------------------


def test_a_recorded_refund_stops_a_later_success_from_crediting():
    payment = PaymentFactory(votes=2)
    record_refund(reference=payment.reference, notice=RefundNotice(status="pending"))

    settlement = settle_payment(reference=payment.reference, verification=success_for(payment))

    assert settlement.outcome == Outcome.STILL_PENDING
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.PENDING
    assert votes_of(payment.contestant_id) == 0
    assert LedgerEntry.objects.count() == 0


def test_a_failed_refund_clears_the_record_and_the_success_then_credits():
    payment = PaymentFactory(votes=2)
    record_refund(reference=payment.reference, notice=RefundNotice(status="pending"))
    record_refund(
        reference=payment.reference,
        notice=RefundNotice(status="failed", refund_reference="r-1", amount=10000),
    )

    settlement = settle_payment(reference=payment.reference, verification=success_for(payment))

    assert settlement.outcome == Outcome.CREDITED
    refund = Refund.objects.get()
    assert (refund.status, refund.refund_reference) == ("failed", "r-1")


def test_refund_events_in_any_order_make_one_refund_that_never_steps_back():
    payment = credited()
    notices = [
        RefundNotice(status="processed", refund_reference="r-9", amount=15000, currency="NGN"),
        RefundNotice(status="pending"),
        RefundNotice(status="processing"),
        RefundNotice(status="processed", refund_reference="r-9", amount=15000, currency="NGN"),
    ]
    for notice in notices:
        record_refund(reference=payment.reference, notice=notice)

    assert list(Refund.objects.values_list("refund_reference", "status", "amount")) == [
        ("r-9", "processed", 15000)
    ]
    payment.refresh_from_db()
    assert payment.refund_recorded_at is not None
    assert payment.status == Payment.Status.CREDITED  # recorded, not yet confirmed


def test_a_refund_verify_does_not_show_changes_nothing_until_confirmed():
    payment = credited(votes=4)

    unconfirmed = reverse_payment(reference=payment.reference, verification=success_for(payment))

    assert unconfirmed.outcome == Outcome.STILL_PENDING
    assert votes_of(payment.contestant_id) == 4


def test_a_partial_refund_confirmed_by_the_refund_record_takes_every_vote_back_once():
    payment = credited(votes=4)
    record_refund(
        reference=payment.reference,
        notice=RefundNotice(status="processed", refund_reference="r-1", amount=100),
    )

    first = reverse_payment(
        reference=payment.reference, verification=success_for(payment), refund_confirmed=True
    )
    second = reverse_payment(
        reference=payment.reference, verification=success_for(payment), refund_confirmed=True
    )

    assert (first.outcome, second.outcome) == (Outcome.REVERSED, Outcome.ALREADY_SETTLED)
    assert votes_of(payment.contestant_id) == 0
    assert Refund.objects.get().confirmed_at is not None
    assert sorted(payment.ledger_entries.values_list("kind", "votes")) == [
        ("credit", 4),
        ("reversal", -4),
    ]
    assert ledger_clean()


def test_a_refund_confirmed_before_the_credit_closes_the_payment_with_no_votes():
    payment = PaymentFactory(votes=2)
    record_refund(reference=payment.reference, notice=RefundNotice(status="processed"))

    settlement = reverse_payment(
        reference=payment.reference, verification=success_for(payment, status="reversed")
    )
    late_success = settle_payment(reference=payment.reference, verification=success_for(payment))

    assert settlement.outcome == Outcome.REVERSED
    assert late_success.outcome == Outcome.ALREADY_SETTLED
    assert votes_of(payment.contestant_id) == 0
    assert LedgerEntry.objects.count() == 0


def test_refund_needing_attention_flags_a_pending_payment_and_marks_a_credited_one():
    pending, paid = PaymentFactory(), credited(votes=2)

    for payment in (pending, paid):
        record_refund(reference=payment.reference, notice=RefundNotice(status="needs-attention"))

    pending.refresh_from_db()
    paid.refresh_from_db()
    assert (pending.status, pending.attention) == ("flagged", "refund_needs_attention")
    # A credited payment keeps its votes: the gateway still says it is paid.
    assert (paid.status, paid.attention) == ("credited", "refund_needs_attention")
    assert votes_of(paid.contestant_id) == 2


def test_an_unconfirmed_refund_past_expiry_asks_a_person():
    payment = credited(votes=2)
    record_refund(reference=payment.reference, notice=RefundNotice(status="processed"))

    settlement = flag_unconfirmed_refund(reference=payment.reference)

    payment.refresh_from_db()
    assert settlement.outcome == Outcome.FLAGGED
    assert payment.attention == Payment.Attention.REFUND_UNCONFIRMED


# --- disputes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "order",
    [
        ("create", "remind", "resolve"),
        ("resolve", "create", "remind"),
        ("create", "resolve", "resolve", "create"),
    ],
)
def test_a_lost_dispute_takes_the_votes_back_once_in_any_event_order(order):
    payment = credited(votes=5)
    reversed_ = success_for(payment, status="reversed")

    for event in order:
        if event == "resolve":
            resolve_dispute(
                reference=payment.reference,
                dispute_id="d-1",
                resolution="declined",
                verification=reversed_,
            )
        else:
            open_dispute(reference=payment.reference, dispute_id="d-1", reminded=event == "remind")

    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.outcome) == ("resolved", "reversed")
    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.REVERSED
    assert votes_of(payment.contestant_id) == 0
    assert payment.ledger_entries.filter(kind="reversal").count() == 1
    assert ledger_clean()


def test_a_won_dispute_closes_and_the_votes_stand():
    payment = credited(votes=5)
    open_dispute(reference=payment.reference, dispute_id="d-2", reminded=False)

    settlement = resolve_dispute(
        reference=payment.reference,
        dispute_id="d-2",
        resolution="merchant-accepted",
        verification=success_for(payment),
    )

    assert settlement.outcome == Outcome.ALREADY_SETTLED
    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.outcome, dispute.resolution) == (
        "resolved",
        "votes_stand",
        "merchant-accepted",
    )
    assert votes_of(payment.contestant_id) == 5


def test_votes_under_an_open_dispute_are_counted_and_shown_as_disputed():
    disputed = credited(votes=5)
    plain = credited(votes=2, contestant=disputed.contestant)
    open_dispute(reference=disputed.reference, dispute_id="d-3", reminded=False)
    open_dispute(reference=disputed.reference, dispute_id="d-4", reminded=False)  # a second one

    contestant = contestants_of(contest=disputed.contestant.contest).get()

    assert (contestant.votes, contestant.votes_under_dispute) == (7, 5)
    assert plain.status == Payment.Status.CREDITED


# --- a person decides ----------------------------------------------------------------------------


def flagged(**fields) -> Payment:
    payment = PaymentFactory(**fields)
    settle_payment(reference=payment.reference, verification=success_for(payment, amount=1))
    payment.refresh_from_db()
    assert payment.status == Payment.Status.FLAGGED
    return payment


def test_credit_anyway_credits_a_flagged_payment_once_and_records_who_and_why():
    payment = flagged(votes=3)

    resolve_attention(
        reference=payment.reference, decision=Decision.CREDIT, actor="ada", note="checked"
    )

    payment.refresh_from_db()
    assert (payment.status, payment.attention) == ("credited", "")
    assert votes_of(payment.contestant_id) == 3
    last = payment.transitions.latest("id")
    assert last is not None
    assert (last.to_status, last.actor, last.reason) == (
        "credited",
        "ada",
        "credit by ada: checked",
    )
    with pytest.raises(CannotResolve, match="does not need attention"):
        resolve_attention(
            reference=payment.reference, decision=Decision.CREDIT, actor="ada", note="again"
        )
    assert votes_of(payment.contestant_id) == 3


def test_mark_refunded_reverses_a_flagged_payment_without_votes():
    payment = flagged()

    resolve_attention(
        reference=payment.reference, decision=Decision.REFUNDED, actor="ada", note="refunded"
    )

    payment.refresh_from_db()
    assert (payment.status, payment.attention) == ("reversed", "")
    assert LedgerEntry.objects.count() == 0


def test_mark_refunded_on_a_credited_payment_takes_its_votes_back():
    payment = credited(votes=2)
    record_refund(reference=payment.reference, notice=RefundNotice(status="needs-attention"))

    resolve_attention(
        reference=payment.reference, decision=Decision.REFUNDED, actor="bo", note="dashboard"
    )

    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.REVERSED
    assert votes_of(payment.contestant_id) == 0
    assert ledger_clean()


def test_keep_votes_clears_the_attention_and_a_decision_needs_a_name_and_a_reason():
    payment = credited(votes=2)
    record_refund(reference=payment.reference, notice=RefundNotice(status="needs-attention"))

    with pytest.raises(CannotResolve, match="who decides and why"):
        resolve_attention(reference=payment.reference, decision=Decision.KEEP, actor="bo", note="")
    with pytest.raises(CannotResolve, match="does not apply"):
        resolve_attention(
            reference=payment.reference, decision=Decision.CREDIT, actor="bo", note="x"
        )
    resolve_attention(reference=payment.reference, decision=Decision.KEEP, actor="bo", note="ok")

    payment.refresh_from_db()
    assert (payment.status, payment.attention) == ("credited", "")
    assert votes_of(payment.contestant_id) == 2


# --- the ledger's walls ------------------------------------------------------------------------


def test_a_reversal_with_no_shard_row_to_move_raises_and_writes_nothing():
    payment = credited(votes=2)
    VoteShard.objects.filter(contestant_id=payment.contestant_id).delete()

    with pytest.raises(LedgerOutOfBalance), transaction.atomic():
        reverse_payment(
            reference=payment.reference, verification=success_for(payment, status="reversed")
        )

    assert Payment.objects.get(pk=payment.pk).status == Payment.Status.CREDITED
    assert payment.ledger_entries.filter(kind="reversal").count() == 0


def test_a_gateway_id_past_a_signed_bigint_is_stored_whole():
    payment = PaymentFactory()
    huge = 2**64 - 1

    settle_payment(reference=payment.reference, verification=success_for(payment, gateway_id=huge))

    assert Payment.objects.get(pk=payment.pk).gateway_id == huge


def test_the_expiry_of_a_refund_is_counted_from_when_it_was_recorded():
    payment = credited()
    record_refund(reference=payment.reference, notice=RefundNotice(status="pending"))
    assert not refund_overdue(Payment.objects.get(pk=payment.pk))
    Payment.objects.filter(pk=payment.pk).update(
        refund_recorded_at=timezone.now() - timedelta(days=2)
    )

    assert refund_overdue(Payment.objects.get(pk=payment.pk))
