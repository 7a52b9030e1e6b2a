"""check_ledger: exit 1 naming each contestant out of balance."""

import pytest
from django.core.management import call_command

from tests.factories import ContestantFactory


@pytest.mark.django_db
def test_check_ledger_exits_1_naming_a_contestant_out_of_balance(capsys):
    ContestantFactory(name="Clean")
    broken = ContestantFactory(name="Tampered", votes=9)

    with pytest.raises(SystemExit) as exit_info:
        call_command("check_ledger")

    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert f"contestant {broken.pk} (Tampered): votes=9 ledger=0" in out
    assert "1 out of balance" in out
    assert "Clean" not in out
