"""The real processes under test: sandbox, gunicorn (tally's and the baseline's) and a worker,
started with devstack's process machinery and the options a benchmark needs."""

import os
import socket
from dataclasses import dataclass

from bench.environment import HOST, PAYSTACK_SECRET_KEY, Ports
from devstack.processes import Processes, free_port


def free_ports() -> Ports:
    return Ports(sandbox=free_port(), web=free_port(), baseline_web=free_port())


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


@dataclass(kw_only=True)
class Stack(Processes):
    """The bench's processes: one sandbox, two webs (tally's and the baseline's), a worker."""

    ports: Ports
    worker_concurrency: int = 0
    worker_batch_size: int = 0
    worker_hostname: str = ""
    worker_starts: int = 0  # how many workers were started: a new one is cold

    def sandbox(self) -> str:
        return self.start_sandbox(
            port=self.ports.sandbox,
            webhook_url=f"http://{HOST}:{self.ports.web}/webhooks/paystack/",
            options=["--secret-key", PAYSTACK_SECRET_KEY, "--log-level", "WARNING"],
        )

    def web(self, name: str, *, port: int, config: WebConfig, **env: str) -> str:
        """Start gunicorn serving `config.wsgi` (the baseline passes its settings module in
        env); wait for it with `wait_for_web`, so several can boot at once."""
        return self.start_web(name, port=port, options=config.argv(), **env)

    def worker(self, *, concurrency: int, batch_size: int = 1) -> bool:
        """Make sure a worker with `concurrency` prefork children and SETTLE_BATCH_SIZE
        `batch_size` runs and consumes; True when one had to be started (it is cold).

        `--include bench.baseline_tasks` registers the baseline tasks in the same worker, so
        tally and the baseline are drained by identical processes.
        """
        wanted = (concurrency, batch_size)
        if (self.worker_concurrency, self.worker_batch_size) == wanted and self.worker_running:
            return False
        self.stop_worker()
        host = socket.gethostname()
        self.worker_hostname = f"bench-{os.getpid()}-c{concurrency}-k{batch_size}@{host}"
        options = ["--pool", "prefork", "--concurrency", str(concurrency), "--loglevel"]
        options += ["WARNING", "--hostname", self.worker_hostname]
        self.start_worker(
            "worker",
            options=[*options, "--include", "bench.baseline_tasks"],
            SETTLE_BATCH_SIZE=str(batch_size),
        )
        self.worker_concurrency, self.worker_batch_size = wanted
        self.worker_starts += 1
        self.wait_until(self._worker_answers, "worker", timeout=60)
        return True

    def stop_worker(self) -> None:
        if "worker" in self.processes:
            self.stop("worker")
        self.worker_concurrency = self.worker_batch_size = 0

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
