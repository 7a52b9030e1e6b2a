import contextlib
import os
from dataclasses import dataclass

import pytest
import requests
from django.db import connection
from kombu import Connection

from devstack.processes import free_port
from paystack.client import gateway
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e


@dataclass
class Sandbox:
    """The control API of the running sandbox."""

    url: str

    def post(self, path: str, payload: dict | None = None) -> dict:
        response = requests.post(f"{self.url}/_sandbox/{path}", json=payload or {}, timeout=30)
        response.raise_for_status()
        return response.json()

    def paid(self, payments, *, status: str = "success") -> None:
        """Tell the gateway these payments exist with `status` (paid by default); no webhook."""
        self.post(
            "transactions",
            {
                "transactions": [
                    {
                        "reference": p.reference,
                        "amount": p.amount,
                        "currency": p.currency,
                        "email": p.email,
                        "status": status,
                    }
                    for p in payments
                ]
            },
        )

    def pay(self, reference: str) -> None:
        """The payer completes the checkout now: paid, and charge.success is posted."""
        self.post(f"transactions/{reference}/pay")

    def refund(self, reference: str, **plan: object) -> dict:
        """A refund carried along `plan` (amount, steps, outcome, lag, catch_up_after)."""
        return self.post("refunds", {"transaction": reference, **plan})

    def dispute(self, reference: str, **options: object) -> str:
        """A chargeback on a paid payment; returns the dispute id."""
        return str(self.post("disputes", {"transaction": reference, **options})["id"])

    def fault(self, **fault: object) -> None:
        self.post("faults", fault)

    def override(self, reference: str, **values: object) -> None:
        """What verify and the list report for `reference` from now on (no webhook)."""
        self.post("overrides", {"reference": reference, **values})

    def settled(self) -> bool:
        """No webhook of the sandbox's is still on its way."""
        return self.stats()["webhooks"]["in_flight"] == 0

    def deliver(self, reference: str, *, times: int = 1, event: str = "charge.success") -> None:
        self.post("deliver", {"reference": reference, "event": event, "times": times})

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_sandbox/stats", timeout=10).json()


@pytest.fixture
def stack(tmp_path, transactional_db, broker):
    """An environment for real processes that share the test database and Redis db 15."""
    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER'] or 'postgres'}@{database['HOST']}:"
        f"{database['PORT']}/{database['NAME']}",
        "STUCK_AFTER_SECONDS": "8",
        "PAYSTACK_TIMEOUT": "2",
        "PYTHONUNBUFFERED": "1",
    }
    processes = Stack(workdir=tmp_path, env=env)
    yield processes
    processes.stop_all()


@pytest.fixture
def sandbox(stack, settings) -> Sandbox:
    """The sandbox as the gateway of every process, this test's included; webhooks go to web."""
    web_port = free_port()
    url = stack.sandbox(
        port=free_port(), webhook_url=f"http://127.0.0.1:{web_port}/webhooks/paystack/"
    )
    stack.env["PAYSTACK_BASE_URL"] = url
    stack.env["WEB_PORT"] = str(web_port)
    settings.PAYSTACK_BASE_URL = url
    gateway.cache_clear()
    return Sandbox(url)


@pytest.fixture
def web(stack, sandbox) -> str:
    return stack.web(port=int(stack.env["WEB_PORT"]))


# TEST_RABBITMQ_URL lets two checkouts on one machine test against their own vhosts.
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture(params=["redis", "rabbitmq"])
def any_broker(request, stack, settings) -> str:
    """Run the test once on Redis (db 15) and once on RabbitMQ, for every process."""
    if request.param == "rabbitmq":
        with Connection(RABBITMQ_URL, connect_timeout=5) as rabbit:
            # A queue never declared has nothing to purge.
            for queue in ("celery", "callbacks", "periodic"):
                with contextlib.suppress(*rabbit.channel_errors):
                    # AMQP's channel; the stubs type default_channel as the generic StdChannel.
                    rabbit.default_channel.queue_purge(queue)  # type: ignore[attr-defined]
        stack.env["CELERY_BROKER_URL"] = RABBITMQ_URL
    return request.param
