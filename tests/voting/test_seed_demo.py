"""seed_demo: two open demo contests; running it twice changes nothing."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from ledger.models import Contest, Contestant
from ledger.selectors import listed_contests


@pytest.mark.django_db
def test_seed_demo_makes_two_open_contests_and_twice_changes_nothing(capsys):
    call_command("seed_demo", contestants=3)
    call_command("seed_demo", contestants=3)

    listed = listed_contests(now=timezone.now())
    assert sorted((item.contest.slug, item.status) for item in listed) == [
        ("demo-finale", "open"),
        ("demo-rising-stars", "open"),
    ]
    assert Contest.objects.count() == 2
    assert Contestant.objects.count() == 3 * 2
    assert Contestant.objects.filter(contest__slug="demo-rising-stars").count() == 3
    out = capsys.readouterr().out
    assert out.count("0 contestant(s) added, 3 in all") == 2


@pytest.mark.django_db
def test_seed_demo_rejects_a_bad_count():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("seed_demo", contestants=0)
