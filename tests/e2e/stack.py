"""Real processes for end-to-end tests: the sandbox, gunicorn, Celery workers and beat."""

from dataclasses import dataclass

from devstack.processes import Process, Processes


@dataclass
class Stack(Processes):
    """devstack's processes with the options the end-to-end tests use."""

    def sandbox(self, *, port: int, webhook_url: str) -> str:
        key = self.env["PAYSTACK_SECRET_KEY"]
        options = ["--secret-key", key, "--webhook-retry-delay", "0.2"]
        return self.start_sandbox(port=port, webhook_url=webhook_url, options=options)

    def web(self, *, port: int, name: str = "web", workers: int = 2, **env: str) -> str:
        options = ["--workers", str(workers), "--threads", "4"]
        url = self.start_web(name, port=port, options=options, **env)
        self.wait_for_web(name, url)
        return url

    def worker(
        self, name: str = "worker", *, concurrency: int = 2, queues: str = "", **env: str
    ) -> Process:
        """A worker on every queue, or only on `queues` (a comma list, as `-Q` takes)."""
        options = ["--loglevel", "INFO", "--concurrency", str(concurrency)]
        options += ["-Q", queues] if queues else []
        process = self.start_worker(name, options=[*options, "--hostname", f"{name}@%h"], **env)
        self.wait_for_log(process, "ready.")
        return process

    def beat(self, name: str = "beat", **env: str) -> Process:
        return self.start_beat(name, **env)
