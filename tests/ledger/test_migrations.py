"""Data already in the ledger survives the migrations: votes credited before the vote shards
existed (migration 0002 put them all on shard 0) can still be reversed after migrating."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from ledger.services import Outcome, reverse_payment
from paystack.types import Verification
from tests.helpers import votes_of

BEFORE_SHARDS = [("ledger", "0001_initial")]


def migrate_to(targets: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor


@pytest.mark.django_db(transaction=True)
def test_votes_credited_before_the_shards_are_reversed_after_migrating():
    old = migrate_to(BEFORE_SHARDS).loader.project_state(BEFORE_SHARDS).apps
    now = timezone.now()
    contest = old.get_model("ledger", "Contest").objects.create(
        name="Old",
        slug="old",
        price_per_vote=100,
        currency="NGN",
        opens_at=now - timedelta(days=2),
        closes_at=now + timedelta(days=2),
    )
    contestant = old.get_model("ledger", "Contestant").objects.create(
        contest=contest, name="Ada", slug="ada", votes=5 + 2
    )
    Payment = old.get_model("ledger", "Payment")
    entries = old.get_model("ledger", "LedgerEntry")
    # Ids chosen off shard 0 (id % 16 != 0), where a reversal looks for its votes.
    for pk, votes in ((7, 5), (21, 2)):
        payment = Payment.objects.create(
            pk=pk,
            reference=f"tly-old{pk}",
            contestant=contestant,
            votes=votes,
            amount=votes * 100,
            currency="NGN",
            email="fan@example.com",
            status="credited",
            credited_at=now,
        )
        entries.objects.create(payment=payment, contestant=contestant, kind="credit", votes=votes)

    migrate_to(MigrationExecutor(connection).loader.graph.leaf_nodes())

    assert votes_of(contestant.pk) == 7
    settlement = reverse_payment(
        reference="tly-old7",
        verification=Verification(
            reference="tly-old7", status="reversed", amount=500, currency="NGN"
        ),
    )
    assert settlement.outcome == Outcome.REVERSED
    assert votes_of(contestant.pk) == 2
    call_command("check_ledger")  # SystemExit(1) if out of balance
