"""The one retry policy of every task that calls the gateway, and its one give-up path."""

import logging
import random
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from paystack.errors import GatewayUnavailable

logger = logging.getLogger(__name__)

MAX_RETRIES = 8
BACKOFF_FACTOR = 2
BACKOFF_MAX_SECONDS = 600  # well under Redis' visibility timeout (3600 s)

GiveUpResult = TypeVar("GiveUpResult")


class VerdictPending(Exception):
    """The gateway answered but has no final word yet (a refund verify does not show): ask
    again later, on the same backoff as an outage."""

    retry_after: float | None = None


def backoff_seconds(retries: int, retry_after: float | None) -> float:
    """Exponential backoff with equal jitter (half fixed, half random), capped; a 429's
    Retry-After is the floor."""
    ceiling = get_exponential_backoff_interval(
        BACKOFF_FACTOR, retries, BACKOFF_MAX_SECONDS, full_jitter=False
    )
    return max(retry_after or 0.0, random.uniform(ceiling / 2, ceiling))


class GatewayTask(Task[..., Any]):
    """Base of every task that calls the gateway: retries transient errors with backoff,
    then gives up the way the task says. Time limits sit above the gateway's timeout."""

    abstract = True
    acks_late = True
    max_retries = MAX_RETRIES
    soft_time_limit = settings.PAYSTACK_TIMEOUT + 20
    time_limit = settings.PAYSTACK_TIMEOUT + 40

    def retry_or_give_up(
        self,
        error: GatewayUnavailable | VerdictPending,
        *,
        give_up: Callable[[], GiveUpResult],
        before_retry: Callable[[float], None] | None = None,
        context: dict[str, Any] | None = None,
    ) -> GiveUpResult:
        """Schedule this task again after the backoff, or, past max_retries, `give_up()`.

        `before_retry(countdown)` runs first, e.g. to give a lease back until the retry is due.
        """
        log_context = {**(context or {}), "error": str(error)}
        if self.request.retries >= self.max_retries:
            logger.warning(
                "gateway still unavailable; giving up",
                extra={**log_context, "outcome": "gave_up", "retries": self.request.retries},
            )
            return give_up()
        countdown = backoff_seconds(self.request.retries, error.retry_after)
        if before_retry is not None:
            before_retry(countdown)
        logger.warning(
            "gateway unavailable; retrying",
            extra={**log_context, "outcome": "retrying", "countdown": round(countdown, 1)},
        )
        raise self.retry(countdown=countdown, exc=error)
