"""The one retry policy of every task that calls the gateway, and its one give-up path."""

import logging
import random
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from celery import Task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from config.celery_app import PUBLISH_ERRORS
from paystack.errors import GatewayUnavailable

logger = logging.getLogger(__name__)

MAX_RETRIES = 8
BACKOFF_FACTOR = 2
BACKOFF_MAX_SECONDS = 600  # well under Redis' visibility timeout (3600 s)

GiveUpResult = TypeVar("GiveUpResult")


class VerdictPending(Exception):
    """The gateway answered but has no final word yet (a refund verify does not show): ask
    again later, on the same backoff as an outage, not before `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def backoff_seconds(retries: int, retry_after: float | None) -> float:
    """Exponential backoff with equal jitter (half fixed, half random); a 429's Retry-After is
    the floor; never more than BACKOFF_MAX_SECONDS."""
    ceiling = get_exponential_backoff_interval(
        BACKOFF_FACTOR, retries, BACKOFF_MAX_SECONDS, full_jitter=False
    )
    # A 429's Retry-After is capped too: a retry due past Redis' visibility timeout would be
    # redelivered early, a second chain for one delivery.
    return min(max(retry_after or 0.0, random.uniform(ceiling / 2, ceiling)), BACKOFF_MAX_SECONDS)


# celery-types makes Task generic; Celery's own class is not subscriptable at run time.
if TYPE_CHECKING:
    _Task = Task[..., Any]
else:
    _Task = Task


class GatewayTask(_Task):
    """Base of every task that calls the gateway: retries transient errors with backoff,
    then gives up the way the task says. Tasks that hold a lease on a delivery set time limits
    below the lease (settings.TASK_TIME_LIMIT); these defaults sit above the gateway's timeout."""

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
        retry_args: Callable[[float], Sequence[Any] | None] | None = None,
        context: dict[str, Any] | None = None,
    ) -> GiveUpResult | None:
        """Schedule this task again after the backoff, or, past max_retries, `give_up()`.

        `retry_args(countdown)` runs first and returns the retry's arguments (a task holding a
        lease gives it back under a new generation, due when the retry is); None means the task
        no longer holds its work, so it neither retries nor gives up: this returns None.
        """
        retries = self.request.retries
        planned = self._plan_retry(error, retries, give_up, retry_args, context)
        if not isinstance(planned, _Retry):
            return planned
        raise self.retry(args=planned.args, countdown=planned.countdown, exc=error)

    def send_retry_or_give_up(
        self,
        error: GatewayUnavailable | VerdictPending,
        *,
        retries: int,
        give_up: Callable[[], GiveUpResult],
        retry_args: Callable[[float], Sequence[Any] | None],
        context: dict[str, Any] | None = None,
    ) -> GiveUpResult | str | None:
        """`retry_or_give_up` for work this task took on besides its own message (a delivery
        claimed into a batch): the retry is a new message of this task, sent after the same
        backoff as a retry `retries` deep, and this call returns "retrying" instead of raising.
        """
        planned = self._plan_retry(error, retries, give_up, retry_args, context)
        if not isinstance(planned, _Retry):
            return planned
        # Not taken by the broker: the sweeper sends it once overdue.
        with suppress(*PUBLISH_ERRORS):
            # (`retries` is an option of send_task that celery-types does not list.)
            self.apply_async(  # type: ignore[call-arg]
                planned.args, countdown=planned.countdown, retries=retries + 1
            )
        return "retrying"

    def _plan_retry(
        self,
        error: GatewayUnavailable | VerdictPending,
        retries: int,
        give_up: Callable[[], GiveUpResult],
        retry_args: Callable[[float], Sequence[Any] | None] | None,
        context: dict[str, Any] | None,
    ) -> "GiveUpResult | _Retry | None":
        log_context = {**(context or {}), "error": str(error)}
        if retries >= self.max_retries:
            logger.warning(
                "gateway still unavailable; giving up",
                extra={**log_context, "outcome": "gave_up", "retries": retries},
            )
            return give_up()
        countdown = backoff_seconds(retries, error.retry_after)
        args = retry_args(countdown) if retry_args is not None else self.request.args
        if args is None:
            logger.warning("work taken over; not retrying", extra=log_context)
            return None
        logger.warning(
            "gateway unavailable; retrying",
            extra={**log_context, "outcome": "retrying", "countdown": round(countdown, 1)},
        )
        return _Retry(tuple(args), countdown)


class _Retry(NamedTuple):
    args: tuple[Any, ...]
    countdown: float
