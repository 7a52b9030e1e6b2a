"""What every command shares: a bad argument exits 2 with the message on stderr."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", ["reconcile", "replay_events"])
def test_a_bad_since_from_the_shell_exits_2_with_the_message_on_stderr(command):
    result = subprocess.run(
        [sys.executable, "manage.py", command, "--since", "soon"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "--since: 'soon' is not a duration" in result.stderr
    assert result.stdout == ""
