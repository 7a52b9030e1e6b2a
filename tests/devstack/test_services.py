"""devstack.services: the configured PostgreSQL and Redis when they answer, private ones if not.

Every "configured" URL here that must have nothing behind it points at a free port of
127.0.0.1, so the system services are never stopped. One private PostgreSQL cluster is
initdb'd for the module and started once per test that needs it.
"""

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from devstack import services
from devstack.processes import REPO, free_port
from devstack.services import POSTGRES, REDIS, ServiceError, ensure, listening
from tests.helpers import wait_until

# The command the wrapper runs: writes the URLs it was given, then waits up to argv[2] seconds
# to be stopped (or for the wrapper to die).
REPORT_URLS = """
import json, os, sys, time
urls = {name: os.environ.get(name) for name in ("DATABASE_URL", "REDIS_URL")}
with open(sys.argv[1] + ".tmp", "w") as out:
    json.dump(urls, out)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
wrapper, deadline = os.getppid(), time.monotonic() + float(sys.argv[2])
while os.getppid() == wrapper and time.monotonic() < deadline:
    time.sleep(0.1)
"""
# Counts the SIGINTs it gets; exit status 10 + that count.
COUNT_SIGINTS = """
import signal, sys, time
received = []
signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
print("ready", flush=True)
deadline = time.monotonic() + 30
while not received and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.5)  # room for a second one, if it comes
sys.exit(10 + len(received))
"""


def dead_url(scheme: str, path: str) -> str:
    """A URL on this machine with nothing listening behind it."""
    return f"{scheme}://{'postgres@' if scheme == 'postgres' else ''}127.0.0.1:{free_port()}{path}"


def suite_urls() -> dict[str, str]:
    """Where this suite's own PostgreSQL and Redis answer (system or private ones)."""
    return {
        "DATABASE_URL": os.environ.get("DATABASE_URL") or POSTGRES.default_url,
        "REDIS_URL": os.environ.get("REDIS_URL") or REDIS.default_url,
    }


def wrapper(run_dir: Path, command: list[str], **env: str) -> "subprocess.Popen[str]":
    """`python -m devstack.services run` with `env` on top of ours."""
    argv = [sys.executable, "-m", "devstack.services", "run", "--run-dir", str(run_dir), "--"]
    return subprocess.Popen(
        [*argv, *command],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: "subprocess.Popen[str]", timeout: float = 60) -> str:
    """Wait for the wrapper to exit; its stderr. Killed if it does not (its instances die too)."""
    try:
        return process.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise


def port_of(url: str) -> int:
    return services.address(url, 0)[1]


@pytest.fixture(scope="module")
def shared_run_dir() -> Iterator[Path]:
    """A .run/ the postgres user can reach when we are root (pytest's tmp_path is 0700)."""
    run_dir = Path(tempfile.mkdtemp(prefix="tally-devstack-"))
    run_dir.chmod(0o755)
    yield run_dir
    shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[services.Service]:
    service = ensure(REDIS, dead_url("redis", "/3"), tmp_path)
    yield service
    service.stop()


def test_wrapper_runs_the_command_on_private_instances_and_stops_them(shared_run_dir: Path) -> None:
    configured = {
        "DATABASE_URL": dead_url("postgres", "/tally_x"),
        "REDIS_URL": dead_url("redis", "/3"),
    }
    report = shared_run_dir / "urls.json"
    process = wrapper(
        shared_run_dir, [sys.executable, "-c", REPORT_URLS, str(report), "120"], **configured
    )
    try:
        wait_until(report.exists, timeout=60)
        urls = json.loads(report.read_text())

        assert urls["DATABASE_URL"].endswith("/tally_x") and urls["REDIS_URL"].endswith("/3")
        assert urls["DATABASE_URL"] != configured["DATABASE_URL"]
        with psycopg.connect(urls["DATABASE_URL"].replace("/tally_x", "/postgres")) as connection:
            data_directory = connection.execute("SHOW data_directory").fetchone()
        assert data_directory == (str(shared_run_dir / "postgres" / "data"),)
        client = redis.Redis.from_url(urls["REDIS_URL"])
        assert client.ping() and client.config_get("save") == {"save": ""}
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)  # passed on to the command, which dies of it
        stderr = finish(process)

    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert not listening("127.0.0.1", port_of(urls["DATABASE_URL"]))
    assert not listening("127.0.0.1", port_of(urls["REDIS_URL"]))
    assert f"PostgreSQL: private instance on 127.0.0.1:{port_of(urls['DATABASE_URL'])}" in stderr
    assert "Redis: private instance stopped" in stderr
    assert "PostgreSQL: private instance stopped" in stderr


def test_private_postgres_keeps_its_data_from_run_to_run(shared_run_dir: Path) -> None:
    configured = dead_url("postgres", "/postgres")
    create = (
        "import os, psycopg; psycopg.connect(os.environ['DATABASE_URL'], autocommit=True)"
        ".execute('CREATE DATABASE kept_from_run_to_run')"
    )
    find = (
        "import os, sys, psycopg; sys.exit(0 if psycopg.connect(os.environ['DATABASE_URL'])"
        ".execute(\"SELECT 1 FROM pg_database WHERE datname = 'kept_from_run_to_run'\")"
        ".fetchone() else 9)"
    )

    for code in (create, find):
        process = wrapper(shared_run_dir, [sys.executable, "-c", code], DATABASE_URL=configured)
        stderr = finish(process)
        assert process.returncode == 0, stderr
    assert "initdb" not in stderr


def test_running_services_are_used_as_is(tmp_path: Path) -> None:
    report = tmp_path / "urls.json"
    command = [sys.executable, "-c", REPORT_URLS + "sys.exit(7)", str(report), "0"]

    process = wrapper(tmp_path, command, **suite_urls())
    stderr = finish(process)

    assert process.returncode == 7, stderr
    assert json.loads(report.read_text()) == suite_urls()
    assert stderr.count("(running)") == 2 and "private" not in stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["urls.json"]


def test_a_running_private_instance_is_shared_and_left_running(
    private_redis: services.Service, tmp_path: Path
) -> None:
    configured = dead_url("redis", "/4")

    shared = ensure(REDIS, configured, tmp_path)
    shared.stop()

    assert shared.url == private_redis.url.replace("/3", "/4")
    assert "another run's" in shared.where
    assert REDIS.answers(private_redis.url)


def test_private_redis_takes_the_next_port_when_its_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with port_taken() as taken:
        ports = iter([taken, free_port()])
        monkeypatch.setattr(services, "free_port", lambda: next(ports))

        service = ensure(REDIS, dead_url("redis", "/0"), tmp_path)
        service.stop()

    assert port_of(service.url) != taken
    assert "Address already in use" in (tmp_path / "redis" / "redis.log").read_text()


def test_port_taken_every_time_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with port_taken() as taken:
        monkeypatch.setattr(services, "free_port", lambda: taken)

        with pytest.raises(ServiceError, match="3 free ports in a row were taken"):
            ensure(REDIS, dead_url("redis", "/0"), tmp_path)


def test_ctrl_c_at_a_terminal_reaches_the_command_once(tmp_path: Path) -> None:
    """The terminal sends SIGINT to the wrapper and the command alike: no second one."""
    master, terminal = os.openpty()
    argv = [sys.executable, "-m", "devstack.services", "run", "--run-dir", str(tmp_path), "--"]
    process = subprocess.Popen(
        [*argv, sys.executable, "-c", COUNT_SIGINTS],
        cwd=REPO,
        env={**os.environ, **suite_urls()},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(terminal)
    try:
        output = b""
        while b"ready" not in output:
            output += os.read(master, 1024)
        os.write(master, b"\x03")  # Ctrl-C
        assert process.wait(timeout=30) == 11, output
    finally:
        os.close(master)


def test_sigint_sent_to_the_wrapper_alone_is_passed_on(tmp_path: Path) -> None:
    process = wrapper(tmp_path, [sys.executable, "-c", COUNT_SIGINTS], **suite_urls())
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=30) == 11


def test_a_stopped_service_on_another_machine_is_an_error_and_the_command_does_not_run(
    tmp_path: Path,
) -> None:
    report = tmp_path / "urls.json"
    command = [sys.executable, "-c", REPORT_URLS, str(report), "0"]

    process = wrapper(tmp_path, command, **{**suite_urls(), "REDIS_URL": "redis://192.0.2.1:6/0"})
    stderr = finish(process)

    assert process.returncode == 1
    assert "Redis is not answering at 192.0.2.1:6, which is not this machine" in stderr
    assert not report.exists()


@pytest.mark.parametrize(("server", "program"), [(POSTGRES, "initdb"), (REDIS, "redis-server")])
def test_missing_binaries_without_apt_get_are_a_clear_error(
    server: services.Server, program: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_binaries(monkeypatch, tmp_path)
    monkeypatch.setattr(services, "installer", lambda: None)
    url = server.default_url.replace(f":{server.default_port}/", f":{free_port()}/")

    with pytest.raises(ServiceError, match=f"{program}.* not found, and installing it needs root"):
        ensure(server, url, tmp_path)


def test_missing_binaries_are_installed_with_apt_get_noninteractively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_binaries(monkeypatch, tmp_path)
    calls = tmp_path / "apt-get.calls"
    apt_get = tmp_path / "apt-get"
    apt_get.write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {calls}\n')
    apt_get.chmod(0o755)
    monkeypatch.setattr(services, "installer", lambda: str(apt_get))

    with pytest.raises(ServiceError, match="redis-server still missing after installing"):
        ensure(REDIS, dead_url("redis", "/0"), tmp_path)

    assert calls.read_text().splitlines() == [
        "noninteractive update -q",
        "noninteractive install -y -q --no-install-recommends redis-server",
    ]


def test_private_url_keeps_credentials_database_and_options() -> None:
    url = "postgres://app:secret@localhost:5432/tally?sslmode=disable"

    assert services.with_port(url, 40001) == (
        "postgres://app:secret@127.0.0.1:40001/tally?sslmode=disable"
    )


def without_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(services, "POSTGRES_LIBS", empty)


@contextlib.contextmanager
def port_taken() -> Iterator[int]:
    """A port another socket holds, as if someone took it between our choosing and binding it."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]
