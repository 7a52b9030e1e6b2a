"""Real processes in their own process groups, with logs, readiness polling and clean stops.

Each process gets its own process group, so a signal reaches its children too (gunicorn's
workers, Celery's pool), and dies with its parent, so a test or bench killed by a timeout
leaves nothing holding ports or the database.
"""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Runs in the child before exec: send it `signum` when its parent goes away, however it goes.

    Its own children (gunicorn and pool workers) notice that their parent died and exit.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Processes:
    """Starts processes with one shared environment and stops every one of them at the end."""

    workdir: Path
    env: dict[str, str]
    processes: dict[str, Process] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], **env: str) -> Process:
        log = self.workdir / f"{name}.log"
        popen = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        process = Process(name, popen, log)
        self.processes[name] = process
        return process

    # --- tally's processes -------------------------------------------------------------

    def start_sandbox(self, *, port: int, webhook_url: str, options: list[str]) -> str:
        """Start `python -m sandbox` and wait until it answers; returns its URL."""
        argv = [str(BIN / "python"), "-m", "sandbox", "--host", HOST, "--port", str(port)]
        self.start("sandbox", [*argv, "--webhook-url", webhook_url, *options])
        url = f"http://{HOST}:{port}"
        self.wait_for_http(f"{url}/_sandbox/health", "sandbox")
        return url

    def start_web(self, name: str, *, port: int, options: list[str], **env: str) -> str:
        """Start gunicorn serving config.wsgi; returns its URL (see wait_for_web)."""
        argv = [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"{HOST}:{port}", *options]
        self.start(name, argv, **env)
        return f"http://{HOST}:{port}"

    def wait_for_web(self, name: str, url: str) -> None:
        self.wait_for_http(f"{url}/healthz", name)

    def start_worker(self, name: str, *, options: list[str], **env: str) -> Process:
        """Start `celery -A config worker` under `name@host` (no gossip, no mingle)."""
        argv = [str(BIN / "celery"), "-A", "config", "worker", "--without-gossip"]
        return self.start(name, [*argv, "--without-mingle", *options], **env)

    def start_beat(self, name: str, **env: str) -> Process:
        schedule = self.workdir / f"{name}-schedule"
        argv = [str(BIN / "celery"), "-A", "config", "beat", "-l", "INFO", "-s", str(schedule)]
        process = self.start(name, argv, **env)
        self.wait_for_log(process, "beat: Starting")
        return process

    # --- stopping ----------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """SIGKILL a process and its children: no cleanup, no acks, like a lost host."""
        process = self.processes.pop(name)
        _signal(process, signal.SIGKILL)
        process.popen.wait(timeout=10)

    def stop(self, name: str) -> None:
        _terminate(self.processes.pop(name))

    def stop_all(self) -> None:
        for process in self.processes.values():  # signal all first, so they stop in parallel
            _signal(process, signal.SIGTERM)
        for process in self.processes.values():
            _terminate(process)
        self.processes.clear()

    # --- waiting -----------------------------------------------------------------------

    def tail(self, name: str, lines: int = 30) -> str:
        process = self.processes.get(name)
        if process is None:
            return ""
        return "\n".join(process.output().splitlines()[-lines:])

    def wait_for_http(self, url: str, name: str, timeout: float = 30) -> None:
        def answers() -> bool:
            try:
                return requests.get(url, timeout=1).ok
            except requests.RequestException:
                return False

        self.wait_until(answers, name, timeout=timeout)

    def wait_for_log(self, process: Process, text: str, timeout: float = 60) -> None:
        self.wait_until(lambda: text in process.output(), process.name, timeout=timeout)

    def wait_until(self, ready: Callable[[], bool], name: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive(name)
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} was not ready after {timeout:g} s:\n{self.tail(name)}")

    def check_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.popen.poll() is not None:
            code = process.popen.returncode
            raise RuntimeError(f"{name} exited {code}:\n{self.tail(name)}\n(log: {process.log})")


def _terminate(process: Process) -> None:
    _signal(process, signal.SIGTERM)
    try:
        process.popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        _signal(process, signal.SIGKILL)
        process.popen.wait(timeout=10)


def _signal(process: Process, signum: int) -> None:
    """Signal the process's whole group (pool children too); a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.popen.pid, signum)
