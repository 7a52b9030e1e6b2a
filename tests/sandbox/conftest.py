"""The sandbox served on a thread, its webhooks received by a recorder, reset for every test."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from sandbox.server import SandboxServer, start_in_thread
from tests.sandbox.helpers import SECRET, Client, Receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def sandbox(receiver: Receiver) -> Iterator[SandboxServer]:
    server = start_in_thread("127.0.0.1", 0, SECRET, receiver.url, webhook_retry_delay=0.05)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(sandbox: SandboxServer, receiver: Receiver) -> Client:
    """A client on a freshly reset sandbox and an empty receiver."""
    client = Client(sandbox.url)
    client.quiet()
    client.control("reset")
    with receiver.lock:
        receiver.posts.clear()
        receiver.answers.clear()
    return client
