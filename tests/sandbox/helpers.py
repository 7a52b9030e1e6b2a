"""Helpers of the sandbox tests: a webhook receiver standing in for tally, and an API client."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

SECRET = "sk_test_unit"
ROOT = Path(__file__).resolve().parents[2]


class Receiver(ThreadingHTTPServer):
    """Stands in for tally's webhook endpoint: records every POST, answers queued statuses."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.lock = threading.Lock()
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []  # statuses to give next; 200 once empty

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/webhooks/paystack/"

    def wait_for(
        self, n: int, match: Callable[[dict], bool] = lambda e: True, timeout: float = 5
    ) -> list[tuple[dict[str, str], bytes, dict]]:
        """Poll until ``n`` recorded webhooks satisfy ``match``; (headers, raw body, parsed)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [(h, b, json.loads(b)) for h, b in self.posts]
            found = [f for f in found if match(f[2])]
            if len(found) >= n or time.monotonic() > deadline:
                assert len(found) >= n, f"expected {n} webhooks, got {len(found)}"
                return found
            time.sleep(0.01)


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Client:
    """A keep-alive session bound to the sandbox, authenticated like tally's worker."""

    def __init__(self, base: str, key: str = SECRET) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.session.get(self.base + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.session.post(self.base + path, **kwargs)

    def control(self, path: str, body: Any = None, method: str = "POST") -> Any:
        response = self.session.request(
            method, f"{self.base}/_sandbox/{path}", json=body, timeout=5
        )
        assert response.ok, response.text
        return response.json()

    def quiet(self, timeout: float = 10) -> None:
        """Wait until no webhook is in flight (a late one would land in the next test)."""
        deadline = time.monotonic() + timeout
        while self.control("stats", method="GET")["webhooks"]["in_flight"]:
            assert time.monotonic() < deadline, "webhooks still in flight"
            time.sleep(0.02)

    def verify(self, reference: str) -> requests.Response:
        return self.get(f"/transaction/verify/{reference}")

    def paid(self, amount: int = 50000, **fields: Any) -> str:
        """A paid transaction created through the control API; its reference."""
        reference = ref()
        self.control("transactions", {"reference": reference, "amount": amount, **fields})
        return reference


def ref() -> str:
    return f"tly-{uuid.uuid4().hex[:20]}"


def signature_ok(headers: dict[str, str], raw: bytes) -> bool:
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha512).hexdigest()
    return hmac.compare_digest(headers.get("x-paystack-signature", ""), expected)
