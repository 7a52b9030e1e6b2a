"""The operator log (docs/contract.md, guarantee 9): who did what to the money or the
deliveries, when, with which arguments, and what came of it.

Every operator action is wrapped in `recorded(...)`: the row is written (and committed) before
the work starts and completed after it, so a crash leaves a visible `running` row behind.
"""

import getpass
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import CommandParser
from django.db.models.functions import Now

from ledger.models import OperatorAction

logger = logging.getLogger(__name__)


@dataclass
class Record:
    """What a running action reports as it goes: its counts and what it touched."""

    action: OperatorAction
    counts: dict[str, int] = field(default_factory=dict)
    payment_references: set[str] = field(default_factory=set)
    delivery_ids: set[int] = field(default_factory=set)

    def count(self, outcomes: dict[str, int]) -> None:
        for outcome, number in outcomes.items():
            self.counts[outcome] = self.counts.get(outcome, 0) + number

    def touched(self, *, payments: Iterable[str] = (), deliveries: Iterable[int] = ()) -> None:
        self.payment_references.update(payments)
        self.delivery_ids.update(deliveries)


@contextmanager
def recorded(
    *,
    action: str,
    actor: str,
    via: OperatorAction.Via,
    arguments: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> Iterator[Record]:
    """Record an operator action around the block: `running` before, `done` or `failed` after.

    Call it outside any transaction (admin views, commands and beat's jobs run in none), so
    the start is committed before the work, whatever the work does. The block reports counts
    and touched rows through the yielded Record.
    """
    record = Record(
        OperatorAction.objects.create(
            action=action, actor=actor, via=via, arguments=arguments or {}, dry_run=dry_run
        )
    )
    try:
        yield record
    except BaseException as exc:
        _finish(record, OperatorAction.Outcome.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    _finish(record, OperatorAction.Outcome.DONE)


def _finish(record: Record, outcome: OperatorAction.Outcome, *, error: str = "") -> None:
    OperatorAction.objects.filter(pk=record.action.pk).update(
        outcome=outcome,
        error=error[:2000],
        counts=record.counts,
        payment_references=sorted(record.payment_references),
        delivery_ids=sorted(record.delivery_ids),
        finished_at=Now(),
    )
    logger.info(
        "operator action recorded",
        extra={
            "action": record.action.action,
            "actor": record.action.actor,
            "outcome": outcome.value,
            "operator_action": record.action.pk,
        },
    )


def recorded_by_beat(action: str, arguments: dict[str, Any]) -> "AbstractContextManager[Record]":
    """`recorded(...)` for one of beat's own jobs (the daily audit and prune, certification)."""
    return recorded(action=action, actor="beat", via=OperatorAction.Via.BEAT, arguments=arguments)


def add_actor_option(parser: CommandParser) -> None:
    """`--actor NAME`: who runs the command, for the operator log (default: the OS user)."""
    parser.add_argument(
        "--actor", help="who runs this, for the operator log (default: the operating-system user)"
    )


def command_actor(given: str | None) -> str:
    """Who runs a command: `--actor`, else the operating-system user."""
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def actions_touching(
    *, payment_reference: str | None = None, delivery_id: int | None = None
) -> "list[OperatorAction]":
    """The operator actions that touched a payment or a delivery, newest first."""
    actions = OperatorAction.objects.all()
    if payment_reference is not None:
        actions = actions.filter(payment_references__contains=[payment_reference])
    if delivery_id is not None:
        actions = actions.filter(delivery_ids__contains=[delivery_id])
    return list(actions)
