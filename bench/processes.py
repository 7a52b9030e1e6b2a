"""The real processes under test: sandbox, gunicorn (tally's and the baseline's) and a worker.

Same approach as tests/e2e/stack.py (own process group per process, logs to files, readiness
by polling), plus what a benchmark needs: each child dies with the bench even when the bench
itself is SIGKILLed (a test timeout).
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

from bench.environment import HOST, PAYSTACK_SECRET_KEY, Ports

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def free_ports() -> Ports:
    return Ports(sandbox=free_port(), web=free_port(), baseline_web=free_port())


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the bench goes away, however it goes.

    Without this a bench killed by a test timeout leaves gunicorn and Celery running, holding
    the ports and the database. Their own children (gunicorn and pool workers) notice that
    their parent died and exit.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class WebConfig:
    """gunicorn's process model; the same for tally and the baseline.

    2 workers x 4 threads (gthread) on 2 cores: measured against 2x8, 3x4, 4x2 and 1x16 with
    16 keep-alive connections, it was at least as fast as any (1x16 was half as fast: one GIL).
    """

    workers: int = 2
    threads: int = 4

    def argv(self) -> list[str]:
        return [
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--worker-class",
            "gthread" if self.threads > 1 else "sync",
            "--keep-alive",
            "30",
            "--graceful-timeout",
            "5",
        ]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Stack:
    """Starts processes with one environment and stops every one of them at the end."""

    workdir: Path
    env: dict[str, str]
    ports: Ports
    processes: dict[str, Process] = field(default_factory=dict)
    worker_concurrency: int = 0
    worker_hostname: str = ""

    def start(self, name: str, argv: list[str], **env: str) -> Process:
        log = self.workdir / f"{name}.log"
        popen = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a signal reaches its children too
            preexec_fn=_die_with_parent,
        )
        process = Process(name, popen, log)
        self.processes[name] = process
        return process

    def sandbox(self) -> str:
        web_url = f"http://{HOST}:{self.ports.web}/webhooks/paystack/"
        self.start(
            "sandbox",
            [
                str(BIN / "python"),
                "-m",
                "sandbox",
                "--host",
                HOST,
                "--port",
                str(self.ports.sandbox),
                "--secret-key",
                PAYSTACK_SECRET_KEY,
                "--webhook-url",
                web_url,
                "--log-level",
                "WARNING",
            ],
        )
        url = self.ports.sandbox_url
        self.wait_for_http(f"{url}/_sandbox/health", "sandbox")
        return url

    def web(self, name: str, *, port: int, config: WebConfig, **env: str) -> str:
        """Start gunicorn serving `config.wsgi` (the baseline passes its settings module in
        env); wait for it with `wait_for_web`, so several can boot at once."""
        self.start(
            name,
            [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"{HOST}:{port}", *config.argv()],
            **env,
        )
        return f"http://{HOST}:{port}"

    def wait_for_web(self, name: str, url: str) -> None:
        self.wait_for_http(f"{url}/healthz", name)

    def worker(self, *, concurrency: int) -> None:
        """Make sure a worker with `concurrency` prefork children runs and consumes.

        `--include bench.baseline_tasks` registers the baseline tasks in the same worker, so
        tally and the baseline are drained by identical processes.
        """
        if self.worker_concurrency == concurrency and "worker" in self.processes:
            return
        self.stop_worker()
        self.worker_hostname = f"bench-{os.getpid()}-c{concurrency}@{socket.gethostname()}"
        self.start(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "WARNING",
                "--hostname",
                self.worker_hostname,
                "--without-gossip",
                "--without-mingle",
                "--include",
                "bench.baseline_tasks",
            ],
        )
        self.worker_concurrency = concurrency
        self.wait_until(self._worker_answers, "worker", timeout=60)

    def stop_worker(self) -> None:
        if "worker" in self.processes:
            self.stop("worker")
        self.worker_concurrency = 0

    @property
    def worker_running(self) -> bool:
        return "worker" in self.processes

    @property
    def tally_process_groups(self) -> set[int]:
        """The process groups of web, baseline web and worker: what tally runs in production.
        The sandbox stands in for Paystack, whose CPU is not ours, so it is left out."""
        return {p.popen.pid for name, p in self.processes.items() if name != "sandbox"}

    def _worker_answers(self) -> bool:
        from config.celery_app import app

        return bool(app.control.ping(destination=[self.worker_hostname], timeout=0.5))

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        _terminate(process)

    def stop_all(self) -> None:
        for process in self.processes.values():  # signal all first, so they stop in parallel
            _signal(process, signal.SIGTERM)
        for process in self.processes.values():
            _terminate(process)
        self.processes.clear()

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
