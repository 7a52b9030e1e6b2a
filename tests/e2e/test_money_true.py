"""End to end, money-true: late payments, refunds the gateway confirms late, partial refunds,
chargebacks in any order, the gateway audit. The real sandbox posts webhooks to real gunicorn;
a real worker and beat settle; every scenario ends with check_ledger clean."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from ledger.models import Dispute, LedgerEntry, Payment, Refund
from ledger.services import expire_payment
from tests.factories import ContestantFactory, PaymentFactory
from tests.helpers import votes_of, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def workers(stack, sandbox, web):
    """A worker and beat (its sweeper) on the stack, the sandbox posting webhooks to web.

    A refund or a dispute right after a credit waits out the verify cooldown: a short one
    keeps these scenarios quick."""
    stack.env["VERIFY_COOLDOWN_SECONDS"] = "2"
    stack.worker(concurrency=2)
    stack.beat()
    return sandbox


def status_is(payment: Payment, status: str):
    def check() -> bool:
        return Payment.objects.get(pk=payment.pk).status == status

    check.__name__ = f"{payment.reference} {status}"
    return check


def credited_through_the_sandbox(sandbox, votes: int = 3, **fields) -> Payment:
    payment = PaymentFactory(votes=votes, **fields)
    sandbox.paid([payment], status="abandoned")
    sandbox.pay(payment.reference)
    wait_until(status_is(payment, "credited"), timeout=30)
    return payment


def ledger_is_clean(sandbox) -> None:
    wait_until(sandbox.settled, timeout=30)
    call_command("check_ledger")  # exits 1 when a total differs from its ledger entries


def test_late_payments_a_garbled_answer_and_the_audit(workers):
    sandbox = workers
    # Paid after we gave up: the webhook's charge.success verifies again and credits.
    late = PaymentFactory(votes=2)
    sandbox.paid([late], status="abandoned")
    expire_payment(reference=late.reference, reason="abandoned and expired")
    sandbox.pay(late.reference)
    wait_until(status_is(late, "credited"), timeout=30)
    assert Payment.objects.get(pk=late.pk).reason == "paid after it was closed as failed"

    # Paid after voting closed: flagged for a refund, no votes.
    closing = ContestantFactory()
    after_close = PaymentFactory(contestant=closing, votes=4)
    sandbox.paid([after_close], status="abandoned")
    closing.contest.closes_at = timezone.now() - timedelta(seconds=1)
    closing.contest.opens_at = closing.contest.closes_at - timedelta(days=1)
    closing.contest.save()
    sandbox.pay(after_close.reference)
    wait_until(status_is(after_close, "flagged"), timeout=30)
    assert Payment.objects.get(pk=after_close.pk).attention == "paid_after_close"
    assert votes_of(closing.pk) == 0

    # A 200 the client cannot read is an outage, retried, never a refusal.
    garbled = PaymentFactory(votes=1)
    sandbox.paid([garbled], status="abandoned")
    sandbox.fault(endpoint="verify", reference=garbled.reference, fault="200_html", count=1)
    sandbox.pay(garbled.reference)
    wait_until(status_is(garbled, "credited"), timeout=30)
    assert sandbox.stats()["verify_by_reference"][garbled.reference] == 2

    # A refund whose webhook never came: the audit finds it in the gateway's list.
    refunded = credited_through_the_sandbox(sandbox, votes=5)
    sandbox.override(refunded.reference, status="reversed")
    call_command("audit_gateway", "--since", "1d")
    assert Payment.objects.get(pk=refunded.pk).status == Payment.Status.REVERSED
    assert votes_of(refunded.contestant_id) == 0
    ledger_is_clean(sandbox)


def test_refunds_confirmed_late_partial_and_before_the_charge(workers):
    sandbox = workers
    # A refund before the charge settled, the gateway confirming it only a few seconds later:
    # the charge never credits; the payment ends reversed once.
    early = PaymentFactory(votes=2)
    sandbox.paid([early])
    sandbox.refund(early.reference, lag="all", catch_up_after=3)
    wait_until(lambda: Refund.objects.filter(payment=early).exists(), timeout=30)
    sandbox.deliver(early.reference)  # its charge.success, after the refund was recorded
    wait_until(status_is(early, "reversed"), timeout=60)
    assert LedgerEntry.objects.filter(payment=early).count() == 0

    # A refund after the credit, with verify and the refund record lagging: retried, then
    # all the votes go back once.
    lagging = credited_through_the_sandbox(sandbox, votes=3)
    sandbox.refund(lagging.reference, lag="all", catch_up_after=3)
    wait_until(status_is(lagging, "reversed"), timeout=60)
    assert votes_of(lagging.contestant_id) == 0

    # A partial refund: verify still says success; the refund record confirms it, and no vote
    # stands on money that went back.
    partial = credited_through_the_sandbox(sandbox, votes=4)
    sandbox.refund(partial.reference, amount=partial.amount // 4)
    wait_until(status_is(partial, "reversed"), timeout=30)
    assert votes_of(partial.contestant_id) == 0
    for payment in (lagging, partial):
        kinds = sorted(payment.ledger_entries.values_list("kind", flat=True))
        assert kinds == ["credit", "reversal"]
    ledger_is_clean(sandbox)


def test_disputes_lost_and_won_in_any_order_with_duplicates(workers):
    sandbox = workers
    lost = credited_through_the_sandbox(sandbox, votes=5)
    won = credited_through_the_sandbox(sandbox, votes=2)

    # The gateway opens, reminds and resolves it without a word, then its events arrive in
    # another order, some twice.
    lost_id = sandbox.dispute(lost.reference, send=False)
    sandbox.post(f"disputes/{lost_id}/remind", {"send": False})
    sandbox.post(f"disputes/{lost_id}/resolve", {"outcome": "lost", "send": False})
    for event in ("resolve", "create", "resolve", "remind", "create"):
        sandbox.post(f"disputes/{lost_id}/send", {"event": event})
    won_id = sandbox.dispute(won.reference)
    wait_until(lambda: Dispute.objects.filter(gateway_id=won_id).exists(), timeout=30)
    assert votes_of(won.contestant_id) == 2  # under dispute, still counted
    sandbox.post(f"disputes/{won_id}/resolve", {"outcome": "won"})
    sandbox.post(f"disputes/{won_id}/send", {"event": "create"})

    wait_until(status_is(lost, "reversed"), timeout=30)
    wait_until(
        lambda: Dispute.objects.filter(gateway_id=won_id, status="resolved").exists(), timeout=30
    )
    wait_until(sandbox.settled, timeout=30)
    assert votes_of(lost.contestant_id) == 0
    assert lost.ledger_entries.filter(kind="reversal").count() == 1
    assert Dispute.objects.get(gateway_id=lost_id).outcome == Dispute.Outcome.REVERSED
    assert Dispute.objects.get(gateway_id=won_id).outcome == Dispute.Outcome.VOTES_STAND
    assert Payment.objects.get(pk=won.pk).status == Payment.Status.CREDITED
    assert votes_of(won.contestant_id) == 2
    ledger_is_clean(sandbox)
