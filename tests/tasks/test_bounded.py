"""Bounded work (docs/contract.md, guarantee 7): a message works only if it is its delivery's
current one; claims are capped; any error ends the delivery; one verify per payment per
cooldown, whoever asks."""

import logging
import subprocess
import sys
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from django.db import connection
from django.utils import timezone

from config.celery_app import app
from ledger.models import Payment
from paystack.errors import GatewayUnavailable
from tasks import retry
from tasks.deliveries import process_delivery
from tasks.reconcile import reconcile_payments
from tasks.retry import backoff_seconds
from tasks.verification import VerifiedMomentsAgo, settle_verified, verify_payment
from tests.factories import DeliveryFactory, PaymentFactory
from tests.helpers import verify_answer, verify_url, votes_of
from webhooks.models import Delivery, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def gateway():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def says(gateway, payment, *, http: int = 200, **changes) -> None:
    body = verify_answer(payment, **changes) if http == 200 else {"status": False}
    gateway.add(responses.GET, verify_url(payment.reference), status=http, json=body)


def run(delivery: Delivery, generation: int | None) -> str:
    result = process_delivery.apply(args=(delivery.pk, generation)).get()
    delivery.refresh_from_db()
    return str(result)


# --- generations -----------------------------------------------------------------------------


def test_a_message_of_an_older_generation_exits_without_a_gateway_call(gateway):
    payment = PaymentFactory()
    delivery = DeliveryFactory(payment=payment, generation=3)
    says(gateway, payment)

    assert run(delivery, 2) == "skipped"
    assert (delivery.status, delivery.attempts) == ("queued", 0)
    assert len(gateway.calls) == 0

    assert run(delivery, 3) == "processed"
    assert len(gateway.calls) == 1


def test_a_duplicate_during_a_retrys_wait_is_refused_even_with_the_current_generation(gateway):
    payment = PaymentFactory()
    waiting = DeliveryFactory(payment=payment, not_before=timezone.now() + timedelta(minutes=5))

    assert run(waiting, waiting.generation) == "skipped"
    assert len(gateway.calls) == 0


def test_a_message_from_before_generations_still_claims(gateway):
    payment = PaymentFactory()
    says(gateway, payment)

    assert run(DeliveryFactory(payment=payment, generation=7), None) == "processed"


def test_each_retry_gives_the_lease_back_under_a_new_generation_its_message_carries(gateway):
    payment = PaymentFactory()
    delivery = DeliveryFactory(payment=payment)
    says(gateway, payment, http=503)
    sent: list[tuple[object, ...]] = []
    real_retry = process_delivery.retry

    def record_retry(*args: Any, **kwargs: Any) -> Any:
        sent.append(tuple(kwargs["args"]))
        return real_retry(*args, **kwargs)

    with mock.patch.object(process_delivery, "retry", side_effect=record_retry):
        process_delivery.apply(args=(delivery.pk, 1))

    # Every retry: claimed with generation g, requeued as g + 1, its message carries g + 1.
    assert sent == [(delivery.pk, g) for g in range(2, 2 + retry.MAX_RETRIES)]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.generation) == ("failed", 1 + retry.MAX_RETRIES)


def test_only_the_lease_holder_can_finish_or_requeue():
    delivery = DeliveryFactory(status="processing", generation=4)

    assert not Delivery.objects.finish(Message(delivery.pk, 3), status="processed")
    assert (
        Delivery.objects.requeue(
            Message(delivery.pk, 3), delay_seconds=1, lease_seconds=60, error=None
        )
        is None
    )
    assert Delivery.objects.finish(Message(delivery.pk, 4), status="processed")


def test_taking_over_an_expired_lease_bumps_the_generation_so_the_old_holder_cannot_finish():
    delivery = DeliveryFactory(status="processing", generation=4, stale_after=timezone.now())

    claimed = Delivery.objects.claim(delivery.pk, None, lease_seconds=60, max_attempts=10)

    assert claimed is not None and claimed.generation == 5
    assert not Delivery.objects.finish(Message(delivery.pk, 4), status="processed")


# --- the attempt cap and errors ----------------------------------------------------------------


def test_the_claim_past_the_attempt_cap_fails_the_delivery_without_a_gateway_call(
    gateway, settings
):
    settings.MAX_DELIVERY_ATTEMPTS = 3
    payment = PaymentFactory()
    delivery = DeliveryFactory(payment=payment, attempts=3, last_error="timeout")
    says(gateway, payment)

    assert run(delivery, delivery.generation) == "failed"
    assert (delivery.status, delivery.outcome, delivery.attempts) == (
        "failed",
        "gave up after 3 attempts",
        3,
    )
    assert delivery.last_error == "timeout"
    assert len(gateway.calls) == 0


def test_an_unexpected_error_fails_the_delivery_with_it_logged_once(gateway, caplog):
    payment = PaymentFactory()
    delivery = DeliveryFactory(payment=payment)
    says(gateway, payment)

    with (
        mock.patch("ledger.services._credit", side_effect=ValueError("a bug")),
        caplog.at_level(logging.ERROR),
    ):
        assert run(delivery, 1) == "failed"

    assert (delivery.status, delivery.outcome) == ("failed", "unexpected error")
    assert delivery.last_error == "ValueError: a bug"
    tracebacks = [r for r in caplog.records if r.exc_info and "unexpected" in r.getMessage()]
    assert len(tracebacks) == 1
    assert Payment.objects.get(pk=payment.pk).status == "pending"  # rolled back


def test_retry_after_is_capped_at_the_backoff_ceiling():
    assert backoff_seconds(0, retry_after=86400) == retry.BACKOFF_MAX_SECONDS
    assert backoff_seconds(0, retry_after=30) >= 30


# --- one verify per payment per cooldown -------------------------------------------------------


def test_a_second_path_within_the_cooldown_does_not_call_the_gateway(gateway, settings):
    settings.VERIFY_COOLDOWN_SECONDS = 30
    payment = PaymentFactory()
    says(gateway, payment, status="ongoing")

    assert settle_verified(payment.reference) == "still_pending"
    with pytest.raises(VerifiedMomentsAgo) as refused:
        settle_verified(payment.reference)

    assert 25 < refused.value.seconds_left <= 30
    assert len(gateway.calls) == 1


def test_a_verify_that_failed_does_not_count_so_a_retry_may_ask_at_once(gateway, settings):
    settings.VERIFY_COOLDOWN_SECONDS = 30
    payment = PaymentFactory(votes=2)
    says(gateway, payment, http=503)
    says(gateway, payment)

    with pytest.raises(GatewayUnavailable):
        settle_verified(payment.reference)
    assert settle_verified(payment.reference) == "credited"
    assert len(gateway.calls) == 2


def test_a_delivery_that_loses_the_cooldown_looks_again_later_without_a_call(
    gateway, settings, broker
):
    settings.VERIFY_COOLDOWN_SECONDS = 30
    payment = PaymentFactory()
    Payment.objects.filter(pk=payment.pk).update(verified_at=timezone.now())
    delivery = DeliveryFactory(payment=payment)

    assert run(delivery, 1) == "cooldown"

    assert len(gateway.calls) == 0
    assert (delivery.status, delivery.generation) == ("queued", 2)
    assert delivery.not_before > timezone.now() + timedelta(seconds=20)
    assert broker.llen("celery") == 1  # its next message, due when the cooldown ends


def test_the_callback_verify_loses_quietly_and_never_retries_a_429(gateway, settings):
    settings.VERIFY_COOLDOWN_SECONDS = 30
    waiting, limited = PaymentFactory(), PaymentFactory()
    Payment.objects.filter(pk=waiting.pk).update(verified_at=timezone.now())
    gateway.add(
        responses.GET,
        verify_url(limited.reference),
        status=429,
        headers={"Retry-After": "5"},
        json={"status": False, "message": "Rate limit exceeded!"},
    )

    assert verify_payment.apply(args=(waiting.reference,)).get() == "verified_moments_ago"
    assert verify_payment.apply(args=(limited.reference,)).get() == "rate_limited"
    assert len(gateway.calls) == 1  # one 429, no retry


def test_reconcile_skips_a_payment_verified_moments_ago_and_stops_at_its_budget(gateway, settings):
    settings.VERIFY_COOLDOWN_SECONDS = 30
    fresh = PaymentFactory()
    Payment.objects.filter(pk=fresh.pk).update(verified_at=timezone.now())
    skipped = reconcile_payments(created_before=timezone.now())
    assert (skipped.checked, skipped.skipped) == (0, 1)
    others = [PaymentFactory() for _ in range(3)]
    for payment in others:
        says(gateway, payment)

    stopped = reconcile_payments(created_before=timezone.now(), budget_seconds=0)
    assert stopped.stopped_early and stopped.checked == 0
    done = reconcile_payments(created_before=timezone.now())
    assert (done.outcomes, done.skipped) == ({"credited": 3}, 1)
    assert votes_of(others[0].contestant_id) == 3


# --- queues and time limits --------------------------------------------------------------------


def test_callbacks_and_beat_jobs_have_their_own_queues():
    route = app.amqp.router.route

    assert route({}, "tally.process_event")["queue"].name == "celery"
    assert route({}, "tally.verify_payment")["queue"].name == "callbacks"
    for job in ("tally.sweep_stuck_deliveries", "tally.reconcile_pending_payments"):
        assert route({}, job)["queue"].name == "periodic"


def test_the_delivery_tasks_hard_time_limit_sits_below_its_lease(settings):
    assert process_delivery.time_limit < settings.STUCK_AFTER_SECONDS
    assert process_delivery.soft_time_limit < process_delivery.time_limit


def test_start_up_refuses_a_gateway_timeout_that_does_not_fit_inside_the_lease():
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; settings.DATABASES"],
        env={
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "1",
            "PAYSTACK_TIMEOUT": "30",
            "STUCK_AFTER_SECONDS": "60",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "PAYSTACK_TIMEOUT=30 does not fit" in result.stderr
    assert "STUCK_AFTER_SECONDS=60" in result.stderr
    assert connection.vendor == "postgresql"


def test_a_replay_gives_a_capped_delivery_a_fresh_budget(gateway, settings, enqueued):
    from webhooks.services import replay_deliveries

    settings.MAX_DELIVERY_ATTEMPTS = 3
    payment = PaymentFactory()
    delivery = DeliveryFactory(payment=payment, attempts=3, status="failed")
    says(gateway, payment)

    replay_deliveries(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()

    assert run(delivery, delivery.generation) == "processed"
    assert delivery.attempts == 4  # history kept; the cap counts from the replay
