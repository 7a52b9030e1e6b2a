"""seed_demo: an open demo contest; running it twice changes nothing."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ledger.models import Contest, Contestant


@pytest.mark.django_db
def test_seed_demo_twice_changes_nothing(capsys):
    call_command("seed_demo", contestants=3)
    call_command("seed_demo", contestants=3)

    assert Contest.objects.count() == 1
    assert Contestant.objects.count() == 3
    assert "0 contestant(s) added, 3 in all" in capsys.readouterr().out


@pytest.mark.django_db
def test_seed_demo_rejects_a_bad_count():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("seed_demo", contestants=0)
