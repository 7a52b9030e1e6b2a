"""Flower listens on 127.0.0.1 unless told otherwise and refuses to start without a real
password: its API can run tasks."""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from config.flower import UnsafeFlower, flower_options
from devstack.processes import BIN, Processes, free_port

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-flower-password"


@pytest.mark.parametrize(
    ("login", "problem"),
    [
        ("", "FLOWER_BASIC_AUTH is empty"),
        ("admin:change-me", "the example password 'change-me'"),
        ("admin:", "'admin' has no password"),
        ("admin", "'admin' has no password"),
        (":secret-secret-secret", "has no password"),
        ("admin:short", "shorter than 12 characters"),
        (f"ops:{PASSWORD},admin:change-me", "the example password"),
    ],
)
def test_an_empty_short_or_example_password_is_refused(login, problem):
    with pytest.raises(UnsafeFlower, match=problem):
        flower_options({"FLOWER_BASIC_AUTH": login})


def test_flower_listens_on_loopback_unless_an_address_is_given():
    default = flower_options({"FLOWER_BASIC_AUTH": f"ops:{PASSWORD}"})
    told = flower_options({"FLOWER_BASIC_AUTH": f"ops:{PASSWORD}", "FLOWER_ADDRESS": "0.0.0.0"})

    assert (default.address, default.basic_auth) == ("127.0.0.1", [f"ops:{PASSWORD}"])
    assert told.address == "0.0.0.0"


def flower_env(**env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    clean.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return {**clean, **env}


@pytest.mark.e2e
@pytest.mark.parametrize("login", ["admin:change-me", ""])
def test_celery_flower_refuses_to_start_with_the_example_or_no_password(login):
    result = subprocess.run(
        [str(BIN / "celery"), "-A", "config", "flower", f"--port={free_port()}"],
        cwd=REPO,
        env=flower_env(FLOWER_BASIC_AUTH=login),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "flower: FLOWER_BASIC_AUTH" in result.stderr


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(workdir=tmp_path, env=flower_env())
    yield started
    started.stop_all()


@pytest.mark.e2e
def test_celery_flower_listens_on_127_0_0_1_only_and_asks_for_the_login(processes):
    port = free_port()
    argv = [str(BIN / "celery"), "-A", "config", "flower", f"--port={port}"]
    processes.start("flower", argv, FLOWER_BASIC_AUTH=f"ops:{PASSWORD}")
    processes.wait_until(lambda: bool(listening_addresses(port)), "flower", timeout=60)

    anonymous = requests.get(f"http://127.0.0.1:{port}/api/workers", timeout=10)
    logged_in = requests.get(f"http://127.0.0.1:{port}/", auth=("ops", PASSWORD), timeout=10)

    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and nothing else
    assert anonymous.status_code == 401
    assert logged_in.status_code == 200


def test_the_procfile_starts_flower_through_its_checks():
    procfile = (REPO / "Procfile").read_text()
    flower = next(line for line in procfile.splitlines() if line.startswith("flower:"))

    assert "celery -A config flower" in flower
    assert "--address" not in flower  # the default, 127.0.0.1, stands
