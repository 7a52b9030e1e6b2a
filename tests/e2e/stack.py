"""Real processes for end-to-end tests: the sandbox, gunicorn, Celery workers and beat."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.processes import Process

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Stack:
    """Starts processes with one shared environment and stops them all at the end."""

    workdir: Path
    env: dict[str, str]
    processes: dict[str, Process] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], **env: str) -> Process:
        log = self.workdir / f"{name}.log"
        popen = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**self.env, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL reaches pool children too
        )
        process = Process(name, popen, log)
        self.processes[name] = process
        return process

    def sandbox(self, *, port: int, webhook_url: str) -> str:
        self.start(
            "sandbox",
            [
                str(BIN / "python"),
                "-m",
                "sandbox",
                "--port",
                str(port),
                "--secret-key",
                self.env["PAYSTACK_SECRET_KEY"],
                "--webhook-url",
                webhook_url,
                "--webhook-retry-delay",
                "0.2",
            ],
        )
        url = f"http://127.0.0.1:{port}"
        self.wait_for_http(f"{url}/_sandbox/health", "sandbox")
        return url

    def web(self, *, port: int, name: str = "web", workers: int = 2, **env: str) -> str:
        self.start(
            name,
            [
                str(BIN / "gunicorn"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                "4",
            ],
            **env,
        )
        url = f"http://127.0.0.1:{port}"
        self.wait_for_http(f"{url}/healthz", name)
        return url

    def worker(self, name: str = "worker", *, concurrency: int = 2, **env: str) -> Process:
        process = self.start(
            name,
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            **env,
        )
        self.wait_for_log(process, "ready.")
        return process

    def beat(self, name: str = "beat", **env: str) -> Process:
        schedule = self.workdir / f"{name}-schedule"
        process = self.start(
            name,
            [str(BIN / "celery"), "-A", "config", "beat", "-l", "INFO", "-s", str(schedule)],
            **env,
        )
        self.wait_for_log(process, "beat: Starting")
        return process

    def kill(self, name: str) -> None:
        """SIGKILL a process and its children: no cleanup, no acks, like a lost host."""
        process = self.processes.pop(name)
        os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.popen.poll() is None:
                os.killpg(process.popen.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait(timeout=10)
        self.processes.clear()

    def wait_for_http(self, url: str, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(name)
            try:
                if requests.get(url, timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{name} did not answer at {url}:\n{self.processes[name].output()}")

    def wait_for_log(self, process: Process, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(process.name)
            if text in process.output():
                return
            time.sleep(0.1)
        raise AssertionError(f"{process.name} never logged {text!r}:\n{process.output()}")

    def _check_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.popen.poll() is not None:
            raise AssertionError(f"{name} exited {process.popen.returncode}:\n{process.output()}")
