"""HTTP side of the sandbox: Paystack API routes, the checkout page, the control API, webhooks.

Paystack facts reproduced here (see docs/paystack.md): the ``{status, message, data}`` envelope;
401 ``Invalid key``; verify answers HTTP 200 for any *found* transaction, the payment state being
``data.status``; webhooks are signed with HMAC-SHA512 of the raw body keyed with the secret key,
only successful charges are pushed, non-200 answers are retried, and duplicates are normal.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import re
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import requests

from sandbox.shapes import iso
from sandbox.state import FAULT_KINDS, OVERRIDABLE, Config, Fault, Store, now

logger = logging.getLogger("sandbox")

CURRENCIES = ("NGN", "GHS", "ZAR", "KES", "USD")
# Not final, so they can still become success (an abandoned payment may be completed later).
PAYABLE = ("abandoned", "ongoing", "pending", "processing", "queued")
STATUSES = ("success", "failed", "reversed", *PAYABLE)
REFERENCE = re.compile(r"[A-Za-z0-9.=-]+")
WEBHOOK_TIMEOUT = 30  # seconds, Paystack's per-attempt timeout

# (method, path pattern, handler name). Paths outside /_sandbox/ and /checkout/ need the Bearer key.
ROUTES = [
    (m, re.compile(p), name)
    for m, p, name in [
        ("POST", r"/transaction/initialize", "initialize"),
        ("GET", r"/transaction/verify(?:/(?P<reference>[^/]*))?", "verify"),
        ("GET", r"/transaction/?", "list_transactions"),
        ("POST", r"/refund/?", "refund"),
        ("GET", r"/checkout/(?P<code>[^/]+)", "checkout_page"),
        ("POST", r"/checkout/(?P<code>[^/]+)/(?P<action>pay|decline)", "checkout_action"),
        ("GET", r"/_sandbox/health", "control_health"),
        ("POST", r"/_sandbox/transactions", "control_create"),
        ("POST", r"/_sandbox/transactions/(?P<reference>[^/]+)/pay", "control_pay"),
        ("POST", r"/_sandbox/deliver", "control_deliver"),
        ("GET", r"/_sandbox/faults", "control_faults"),
        ("POST", r"/_sandbox/faults", "control_add_fault"),
        ("DELETE", r"/_sandbox/faults", "control_clear_faults"),
        ("POST", r"/_sandbox/overrides", "control_override"),
        ("GET", r"/_sandbox/config", "control_config"),
        ("POST", r"/_sandbox/config", "control_config"),
        ("GET", r"/_sandbox/stats", "control_stats"),
        ("POST", r"/_sandbox/reset", "control_reset"),
    ]
]


class HTTPError(Exception):
    """Raised by handlers to answer ``status`` with Paystack's error envelope as JSON."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers
        self.payload = {"status": False, "message": message, **extra}


def positive_int(value: Any) -> int | None:
    """Amounts are integers in minor units: an int or an all-digit string, never a float or bool."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def number(body: dict[str, Any], key: str, default: float, cast: type = int) -> Any:
    """A non-negative ``cast`` number from a control request body, or 400."""
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise HTTPError(400, f"{key} must be a non-negative number")
    return cast(value)


def parse_moment(value: str, end_of_day: bool = False) -> datetime:
    """ISO datetime (with or without ``Z``) or date, as aware UTC; a ``to`` date is inclusive."""
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "+"))  # "+" arrives as a space
    except ValueError:
        raise HTTPError(400, f"Invalid date: {value}") from None
    if end_of_day and len(value.strip()) == 10:
        moment += timedelta(days=1, milliseconds=-1)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1>{body}</body></html>"
    )


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck keep-alive connection must never block shutdown
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(
        self, address: tuple[str, int], secret_key: str, config: Config, public_url: str | None
    ) -> None:
        super().__init__(address, Handler)
        self.secret_key = secret_key
        self.store = Store(config)
        self.public_url = (public_url or self.url).rstrip("/")

    @property
    def url(self) -> str:
        # Bound from the (host, port) of str and int it was given; typeshed allows bytes too.
        host, port = cast("tuple[str, int]", self.server_address[:2])
        return f"http://{host}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out close the socket under us; that is expected, not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("client %s went away", client_address)
        else:
            logger.exception("error while handling a request from %s", client_address)

    def webhook(
        self,
        event: str,
        reference: str,
        *,
        times: int | None = None,
        delay: float | None = None,
        wait: bool = False,
        retries: int | None = None,
    ) -> list[int | None] | None:
        """Post ``event`` about ``reference`` ``times`` times concurrently, after ``delay`` seconds.

        Returns each copy's final HTTP status (None = no answer) when ``wait``, else [] at once;
        None if the transaction is unknown. Webhooks carry the stored truth, never overrides.
        """
        tx = self.store.get(reference)
        if tx is None:
            return None
        data: dict[str, Any] | None
        if event == "charge.success":
            data = self.store.charge_event(reference)
        else:
            data = self.store.refund_event(reference)
        default_times, default_delay = self.store.delivery(reference)
        times = default_times if times is None else times
        delay = default_delay if delay is None else delay
        config = self.store.config
        retries = config.webhook_retries if retries is None else retries
        # Serialize once and sign exactly those bytes. Compact separators and raw UTF-8 (like
        # Paystack), so a receiver that hashes re-serialized JSON instead of the raw body fails.
        body = json.dumps({"event": event, "data": data}, separators=(",", ":"), ensure_ascii=False)
        raw = body.encode()
        signature = hmac.new(self.secret_key.encode(), raw, hashlib.sha512).hexdigest()
        results: list[int | None] = [None] * times

        def deliver(i: int) -> None:
            if delay:
                time.sleep(delay)
            results[i] = self._post(
                config.webhook_url, raw, signature, retries, config.webhook_retry_delay
            )

        threads = [
            threading.Thread(target=deliver, args=(i,), daemon=True, name=f"webhook-{reference}")
            for i in range(times)
        ]
        for thread in threads:
            thread.start()
        if not wait:
            return []
        for thread in threads:
            thread.join()
        return results

    def _post(self, url: str, raw: bytes, signature: str, retries: int, pause: float) -> int | None:
        """One delivery: a first attempt, then up to ``retries`` more while the answer isn't 200."""
        headers = {"Content-Type": "application/json", "x-paystack-signature": signature}
        status = None
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(pause)
            try:
                status = requests.post(
                    url, data=raw, headers=headers, timeout=WEBHOOK_TIMEOUT
                ).status_code
            except requests.RequestException as exc:
                status, reason = None, repr(exc)
            else:
                reason = f"HTTP {status}"
            self.store.count_webhook(status == 200)
            if status == 200:
                logger.debug("webhook to %s: 200", url)
                return status
            logger.warning("webhook to %s failed (attempt %d): %s", url, attempt + 1, reason)
        return status


class Handler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"  # keep-alive, so every answer carries Content-Length
    disable_nagle_algorithm = True  # headers and body go out as two writes; don't stall the second

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    # -- plumbing ------------------------------------------------------------------------------

    def dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.raw = self.rfile.read(length) if length else b""  # always drain, for keep-alive
        parts = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            route = next(
                (
                    (name, match)
                    for route_method, pattern, name in ROUTES
                    if route_method == method and (match := pattern.fullmatch(parts.path))
                ),
                None,
            )
            if route is None:
                raise HTTPError(404, "Not found")
            name, match = route
            if not parts.path.startswith(("/_sandbox/", "/checkout/")) and not self.authorized():
                raise HTTPError(401, "Invalid key")
            args = {k: unquote(v or "") for k, v in match.groupdict().items()}
            getattr(self, name)(**args)
        except HTTPError as exc:
            self.send_json(exc.status, exc.payload, exc.headers)
        except ConnectionError:
            raise  # the client is gone; SandboxServer.handle_error notes it
        except Exception:
            logger.exception("%s %s failed", method, self.path)
            self.send_json(500, {"status": False, "message": "Sandbox error (see its log)"})

    def authorized(self) -> bool:
        expected = f"Bearer {self.server.secret_key}".encode()
        return hmac.compare_digest(self.headers.get("Authorization", "").encode(), expected)

    def body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.raw or b"{}")
        except ValueError:
            raise HTTPError(400, "Invalid JSON body") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "Expected a JSON object")
        return body

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(payload).encode(), "application/json", headers)

    def send_html(self, status: int, text: str) -> None:
        self.send(status, text.encode(), "text/html; charset=utf-8")

    def send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def fault(self, endpoint: str, reference: str | None) -> None:
        """Count the call; play an injected fault if one matches (raise, or sleep then go on)."""
        fault = self.server.store.api_call(endpoint, reference)
        if fault is None:
            return
        logger.info("fault %s on %s %s", fault.fault, endpoint, reference or "")
        if fault.fault == "500":
            raise HTTPError(500, "Internal server error")
        if fault.fault == "429":
            wait = str(fault.retry_after)
            headers = {"Retry-After": wait, "x-ratelimit-reset": wait}
            raise HTTPError(429, "Rate limit exceeded!", headers, code="rate_limited")
        time.sleep(fault.delay)  # "timeout": the client's own timeout should fire first

    # -- Paystack API --------------------------------------------------------------------------

    def initialize(self) -> None:
        body = self.body()
        reference = str(body["reference"]) if body.get("reference") else None
        self.fault("initialize", reference)
        email, amount = body.get("email"), positive_int(body.get("amount"))
        currency = body.get("currency") or "NGN"
        if not isinstance(email, str) or "@" not in email:
            raise HTTPError(400, "Invalid Email Address Passed")
        if amount is None:
            raise HTTPError(400, "Invalid Amount Sent")
        if currency not in CURRENCIES:
            raise HTTPError(400, "Currency not supported by merchant")
        if reference is not None and not REFERENCE.fullmatch(reference):
            raise HTTPError(400, "Only -, ., = and alphanumeric characters allowed for reference")
        tx = self.server.store.put(
            reference,
            replace=False,
            amount=amount,
            currency=currency,
            email=email,
            status="abandoned",  # initialized, not paid (yet)
            callback_url=body.get("callback_url"),
            metadata=body.get("metadata"),
        )
        if tx is None:  # also after a timed-out call that did succeed: the URL is not given again
            raise HTTPError(400, "Duplicate Transaction Reference", code="duplicate_reference")
        data = {
            "authorization_url": f"{self.server.public_url}/checkout/{tx.access_code}",
            "access_code": tx.access_code,
            "reference": tx.reference,
        }
        self.send_json(200, {"status": True, "message": "Authorization URL created", "data": data})

    def verify(self, reference: str) -> None:
        self.fault("verify", reference or None)
        if not reference:  # Paystack falls through to fetch-by-id
            raise HTTPError(400, "Transaction ID should be numeric")
        data = self.server.store.report(reference)
        if data is None:
            raise HTTPError(400, "Transaction reference not found", code="transaction_not_found")
        self.send_json(200, {"status": True, "message": "Verification successful", "data": data})

    def list_transactions(self) -> None:
        self.fault("list", None)
        q = self.query
        per_page = positive_int(q.get("perPage") or q.get("per_page")) or 50
        number_ = positive_int(q.get("page")) or 1
        items = self.server.store.listing()
        if status := q.get("status"):
            items = [t for t in items if t["status"] == status]
        # Same fixed-width ISO format on both sides, so comparing strings compares instants.
        if start := q.get("from"):
            after = iso(parse_moment(start))
            items = [t for t in items if t["created_at"] >= after]
        if end := q.get("to"):
            before = iso(parse_moment(end, end_of_day=True))
            items = [t for t in items if t["created_at"] <= before]
        total, skipped = len(items), (number_ - 1) * per_page
        meta = {
            "total": total,
            "skipped": skipped,
            "perPage": per_page,
            "page": number_,
            "pageCount": -(-total // per_page),
        }
        data = items[skipped : skipped + per_page]
        self.send_json(
            200, {"status": True, "message": "Transactions retrieved", "data": data, "meta": meta}
        )

    def refund(self) -> None:
        body = self.body()
        key = body.get("transaction")
        if not isinstance(key, str | int) or isinstance(key, bool) or key == "":
            raise HTTPError(400, "Transaction reference or id is required")
        tx = self.server.store.find(key)
        self.fault("refund", tx.reference if tx else str(key))
        amount = body.get("amount")
        if amount is not None and (amount := positive_int(amount)) is None:
            raise HTTPError(400, "Invalid amount")
        data, error = self.server.store.refund(key, amount)
        if data is None:
            raise HTTPError(400, error or "Transaction not found")
        self.server.webhook("refund.processed", data["reference"])
        refund = {
            "transaction": data,
            "amount": amount or data["amount"],
            "currency": data["currency"],
            "status": "pending",
        }
        message = "Refund has been queued for processing"
        self.send_json(200, {"status": True, "message": message, "data": refund})

    # -- checkout (the payer's browser) --------------------------------------------------------

    def checkout_page(self, code: str) -> None:
        tx = self.server.store.by_code(code)
        if tx is None:
            return self.send_html(404, page("Not found", "<p>Unknown checkout.</p>"))
        e = html.escape
        major = f"{tx.amount // 100:,}.{tx.amount % 100:02d}"  # minor units, no floats
        body = (
            f"<p>Pay <strong>{e(tx.currency)} {major}</strong> as {e(tx.email)}</p>"
            f"<p>Reference: <code>{e(tx.reference)}</code>, status: {e(tx.status)}</p>"
            f'<form method="post" action="/checkout/{e(code)}/pay">'
            f'<button id="pay" type="submit">Pay</button></form>'
            f'<form method="post" action="/checkout/{e(code)}/decline">'
            f'<button id="decline" type="submit">Decline</button></form>'
        )
        self.send_html(200, page("Sandbox checkout", body))

    def checkout_action(self, code: str, action: str) -> None:
        tx = self.server.store.by_code(code)
        if tx is None:
            return self.send_html(404, page("Not found", "<p>Unknown checkout.</p>"))
        status = "success" if action == "pay" else "failed"
        if self.server.store.settle(tx.reference, status, PAYABLE) is None:
            return self.send_html(
                409, page("Already settled", f"<p>Status: {html.escape(tx.status)}</p>")
            )
        if status == "success":  # only successful charges are pushed; in the background
            self.server.webhook("charge.success", tx.reference)
        if not tx.callback_url:
            title = "Paid" if status == "success" else "Declined"
            return self.send_html(200, page(title, f"<p>{html.escape(tx.reference)}</p>"))
        sep = "&" if "?" in tx.callback_url else "?"
        query = urlencode({"trxref": tx.reference, "reference": tx.reference})
        self.send(302, b"", "text/plain", {"Location": f"{tx.callback_url}{sep}{query}"})

    # -- control API (no auth) -----------------------------------------------------------------

    def control_health(self) -> None:
        self.send_json(200, {"ok": True})

    def control_create(self) -> None:
        body = self.body()
        many = body.get("transactions")
        if many is None:
            return self.send_json(200, self._create(body))
        if not isinstance(many, list) or not all(isinstance(item, dict) for item in many):
            raise HTTPError(400, "transactions must be a list of objects")
        for item in many:
            self._create(item)
        self.send_json(200, {"created": len(many)})

    def _create(self, item: dict[str, Any]) -> dict[str, Any]:
        reference, amount = item.get("reference"), positive_int(item.get("amount"))
        status = item.get("status", "success")
        if not isinstance(reference, str) or not REFERENCE.fullmatch(reference):
            raise HTTPError(400, f"Invalid reference: {reference!r}")
        if amount is None:
            raise HTTPError(400, f"Invalid amount for {reference}")
        if status not in STATUSES:
            raise HTTPError(400, f"status must be one of {', '.join(STATUSES)}")
        created_at = parse_moment(item["created_at"]) if item.get("created_at") else now()
        tx = self.server.store.put(
            reference,
            replace=True,
            amount=amount,
            currency=item.get("currency", "NGN"),
            email=item.get("email", "fan@example.com"),
            status=status,
            created_at=created_at,
            paid_at=max(created_at, now()) if status in ("success", "reversed") else None,
            callback_url=item.get("callback_url"),
            metadata=item.get("metadata", {}),
        )
        assert tx is not None  # replace=True always stores
        return self.server.store.data(tx)

    def control_pay(self, reference: str) -> None:
        body = self.body()
        store = self.server.store
        if store.get(reference) is None:
            raise HTTPError(404, "Transaction reference not found")
        if store.settle(reference, "success", PAYABLE) is None:
            raise HTTPError(409, "Transaction is not awaiting payment")
        times = number(body, "times", 1) if "times" in body else None
        delay = number(body, "delay", 0, float) if "delay" in body else None
        self.server.webhook("charge.success", reference, times=times, delay=delay)
        self.send_json(200, {"reference": reference, "status": "success"})

    def control_deliver(self) -> None:
        body = self.body()
        event = body.get("event", "charge.success")
        if event not in ("charge.success", "refund.processed"):
            raise HTTPError(400, "event must be charge.success or refund.processed")
        retries = number(body, "retries", 0) if "retries" in body else None
        statuses = self.server.webhook(
            event,
            str(body.get("reference")),
            times=max(1, number(body, "times", 1)),
            delay=number(body, "delay", 0, float),
            wait=bool(body.get("wait")),
            retries=retries,
        )
        if statuses is None:
            raise HTTPError(404, "Transaction reference not found")
        self.send_json(200, {"statuses": statuses})

    def control_faults(self) -> None:
        self.send_json(200, {"faults": self.server.store.edit_faults()})

    def control_add_fault(self) -> None:
        body = self.body()
        endpoint, kind = body.get("endpoint", "any"), str(body.get("fault"))
        reference = body.get("reference")
        if endpoint not in ("initialize", "verify", "list", "refund", "any"):
            raise HTTPError(400, "endpoint must be initialize, verify, list, refund or any")
        if kind not in FAULT_KINDS:
            raise HTTPError(400, "fault must be 500, 429 or timeout")
        fault = Fault(
            endpoint=endpoint,
            reference=str(reference) if reference is not None else None,
            fault=kind,
            count=max(1, number(body, "count", 1)),
            retry_after=number(body, "retry_after", 1),
            delay=number(body, "delay", 5, float),
        )
        self.send_json(200, {"faults": self.server.store.edit_faults(add=fault)})

    def control_clear_faults(self) -> None:
        self.send_json(200, {"faults": self.server.store.edit_faults(clear=True)})

    def control_override(self) -> None:
        body = self.body()
        reference = body.pop("reference", None)
        allowed = (*OVERRIDABLE, "webhook_times", "webhook_delay")
        if not isinstance(reference, str) or not reference or set(body) - set(allowed):
            raise HTTPError(400, f"Expected a reference and some of: {', '.join(allowed)}")
        if "status" in body and body["status"] not in STATUSES:
            raise HTTPError(400, f"status must be one of {', '.join(STATUSES)}")
        if "webhook_times" in body:
            body["webhook_times"] = max(1, number(body, "webhook_times", 1))
        if "webhook_delay" in body:
            body["webhook_delay"] = number(body, "webhook_delay", 0, float)
        overrides = self.server.store.override(reference, body)
        self.send_json(200, {"reference": reference, "overrides": overrides})

    def control_config(self) -> None:
        store = self.server.store
        if self.command == "POST":
            body = self.body()
            if "webhook_url" in body and not isinstance(body["webhook_url"], str):
                raise HTTPError(400, "webhook_url must be a string")
            c = store.config
            changes = {  # validate everything before changing anything
                "webhook_url": body.get("webhook_url", c.webhook_url),
                "webhook_times": max(1, number(body, "webhook_times", c.webhook_times)),
                "webhook_delay": number(body, "webhook_delay", c.webhook_delay, float),
                "webhook_retries": number(body, "webhook_retries", c.webhook_retries),
                "webhook_retry_delay": number(
                    body, "webhook_retry_delay", c.webhook_retry_delay, float
                ),
            }
            with store.lock:
                vars(store.config).update(changes)
        with store.lock:
            config = vars(store.config).copy()
        self.send_json(200, config)

    def control_stats(self) -> None:
        self.send_json(200, self.server.store.snapshot())

    def control_reset(self) -> None:
        self.server.store.reset()
        self.send_json(200, {"ok": True})


def make_server(
    host: str,
    port: int,
    secret_key: str,
    webhook_url: str,
    public_url: str | None = None,
    *,
    webhook_retries: int = 3,
    webhook_retry_delay: float = 1.0,
) -> SandboxServer:
    """Bind (port 0 picks a free port; see ``server.url``) without serving yet."""
    config = Config(
        webhook_url=webhook_url,
        webhook_retries=webhook_retries,
        webhook_retry_delay=webhook_retry_delay,
    )
    return SandboxServer((host, port), secret_key, config, public_url)


def start_in_thread(*args: Any, **kwargs: Any) -> SandboxServer:
    """``make_server(...)`` and serve it on a daemon thread; stop with ``shutdown()``."""
    server = make_server(*args, **kwargs)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="sandbox"
    ).start()
    return server
