"""PAYSTACK_WEBHOOK_IPS is checked at start-up."""

import os
import subprocess
import sys


def test_a_typo_in_the_webhook_allowlist_stops_start_up_naming_it():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, "PAYSTACK_WEBHOOK_IPS": "52.31.139.75,paystak"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "PAYSTACK_WEBHOOK_IPS: 'paystak' is neither an address nor a network" in result.stderr
