"""HTTP side of the sandbox: Paystack API routes, the checkout page, the control API, webhooks.

Paystack facts reproduced here (see docs/paystack.md): the ``{status, message, data}`` envelope;
401 ``Invalid key``; verify answers HTTP 200 for any *found* transaction, the payment state being
``data.status``; webhooks are signed with HMAC-SHA512 of the raw body keyed with the secret key,
only successful charges are pushed, non-200 answers are retried, and duplicates are normal.

Paystack API (``Authorization: Bearer <secret key>``, else 401 ``Invalid key``):

- ``POST /transaction/initialize {email, amount, reference?, currency?, callback_url?, metadata?}``
- ``GET /transaction/verify/<reference>``: 400 ``Transaction reference not found`` if unknown.
- ``GET /transaction/<id>`` (fetch): the verify ``data`` by numeric id; 404 ``Transaction not
  found``; 400 ``Transaction ID should be numeric``.
- ``GET /transaction?perPage|per_page&page&status&from&to``: newest first, verify-shaped items;
  meta ``{total, total_volume, skipped, perPage, page, pageCount}``. With ``use_cursor=true``
  (or a ``next``/``previous`` cursor): meta ``{next, previous, perPage}``, opaque cursors, null
  at either end. ``from``/``to`` are ISO datetimes or dates (a ``to`` date is inclusive) and
  filter on ``created_at``.
- ``POST /refund {transaction: reference or id, amount?}``: a refund of ``amount`` (default:
  all not yet refunded; partial refunds add up), processed at once: posts ``refund.processed``
  and answers the refund as queued (``status: pending``) with the transaction embedded. Verify
  says ``reversed`` once processed refunds cover the whole amount. 400 ``Transaction not found``,
  ``Transaction has not been paid``, ``Transaction has been fully reversed``, or ``Refund
  amount cannot be more than the transaction amount`` (what is left to refund).
- ``GET /refund?transaction=<id or reference>&perPage&page``: refunds, newest first; meta
  ``{total, skipped, perPage (a string, as in Paystack's OpenAPI), page, pageCount,
  failedRefundCount}``. ``GET /refund/<id>``: one refund; 404 ``Refund not found``.

Payer pages: ``GET /checkout/<code>`` with **Pay** (``POST /checkout/<code>/pay``: paid now,
posts ``charge.success``, redirects to the callback; an abandoned payment can still be paid) and
**Decline** (``POST /checkout/<code>/decline``: failed, no webhook).

Control API (no auth, JSON bodies, under ``/_sandbox/``). Calls that make webhooks take
``times`` (concurrent copies), ``delay`` (seconds), ``retries`` and ``wait`` (answer once
delivered); absent, ``times`` and ``delay`` come from the reference's overrides, then config.

- ``GET health``; ``POST reset`` (forgets everything but the id counters: ids never repeat).
- ``POST transactions {reference, amount, status?, currency?, email?, created_at?, metadata?}``
  or ``{"transactions": [...]}``; ``POST transactions/<ref>/pay`` (abandoned or pending →
  success, ``paid_at`` now, posts ``charge.success``); ``POST transactions/<ref>/abandon`` (a
  payment not final → abandoned; still payable later). ``POST next-id {id}``: number new
  transactions from ``id`` on, up to 2**64 - 1 (never backwards).
- ``POST refunds {transaction, amount?, steps?, outcome?, lag?, catch_up_after?}``: a refund
  carried along a plan. ``steps``: ``["pending", "processing"]`` or part of it, whose events go
  out first; ``outcome``: ``processed`` (default), ``failed``, ``needs-attention``, or
  ``pending`` (stays in flight; no outcome event); ``lag``: ``none`` (record and verify show the
  outcome before its webhook goes out), ``verify`` (the refund record does, verify still says
  ``success``), ``all`` (the record says ``pending`` too); ``catch_up_after``: seconds until a
  lagging gateway catches up (absent: only when asked). Answers the refund record.
  ``POST refunds/<id>/finish {same plan}``: carry a refund in flight or one that needs
  attention on. ``POST refunds/<id>/catch-up``: a lagging gateway catches up now.
- ``POST disputes {transaction, refund_amount?, send?}``: a chargeback on a paid transaction;
  posts ``charge.dispute.create`` (``send: false`` makes it silently) and answers its data
  (``id`` = the dispute id). ``POST disputes/<id>/remind {send?}``: ``charge.dispute.remind``.
  ``POST disputes/<id>/resolve {outcome: lost|won, resolution?, send?}``: lost (default
  resolution ``merchant-accepted``) reverses the transaction, won (``declined``) leaves it paid;
  posts ``charge.dispute.resolve``. ``POST disputes/<id>/send {event: create|remind|resolve}``:
  posts that event again, byte for byte (any order, any number of times); 409 if it has not
  happened; answers ``{"statuses"}``.
- ``POST deliver {reference, event?, refund?, times, delay, wait, retries}``: post
  ``charge.success`` (default) or ``refund.<status>`` again (about refund ``refund``, else the
  latest, else one never made), e.g. out of order; answers ``{"statuses"}`` (with ``wait``).
- ``POST faults {endpoint, reference?, fault, count, retry_after, delay}`` / ``GET`` /
  ``DELETE faults``: endpoints ``initialize``, ``verify``, ``fetch``, ``list``, ``refund``,
  ``refund_list``, ``refund_fetch`` or ``any``; faults ``500``, ``429`` (``Retry-After``),
  ``timeout`` (answers after ``delay``), ``200_html`` (a proxy's HTML page with status 200),
  ``200_no_status`` (JSON with status 200 and no ``status``).
- ``POST overrides {reference, amount?, requested_amount?, currency?, status?, domain?,
  webhook_times?, webhook_delay?}``: what verify, fetch and list report (webhooks carry the
  truth), and this reference's webhook delivery.
- ``GET|POST config {webhook_url, webhook_times, webhook_delay, webhook_retries,
  webhook_retry_delay, reverse_on_partial_refund}``; ``GET stats``: API calls per endpoint,
  verify calls per reference, faults served, webhooks sent/ok/failed (attempts) and
  ``in_flight`` (copies not delivered or given up yet: wait for 0), counts of records.
"""

from __future__ import annotations

import contextlib
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

from sandbox.pages import cursor_page, offset_page
from sandbox.shapes import iso
from sandbox.state import (
    ENDPOINTS,
    FAULT_KINDS,
    FIRST_ID,
    MAX_ID,
    OVERRIDABLE,
    PAYABLE,
    REFUND_LAGS,
    REFUND_OUTCOMES,
    REFUND_STEPS,
    Change,
    Config,
    Fault,
    RefundPlan,
    Refused,
    Store,
    now,
)

logger = logging.getLogger("sandbox")

CURRENCIES = ("NGN", "GHS", "ZAR", "KES", "USD")
STATUSES = ("success", "failed", "reversed", *PAYABLE)
REFERENCE = re.compile(r"[A-Za-z0-9.=-]+")
WEBHOOK_TIMEOUT = 30  # seconds, Paystack's per-attempt timeout
DISPUTE_EVENTS = ("create", "remind", "resolve")
# What a misbehaving proxy in front of the gateway answers with 200 (the 200_html fault).
PROXY_PAGE = (
    "<!doctype html><html><head><title>Gateway</title></head>"
    "<body><p>Your request is being processed. Please wait.</p></body></html>"
)
NO_STATUS = {"message": "Request completed", "data": None}  # the 200_no_status fault

# (method, path pattern, handler name). Paths outside /_sandbox/ and /checkout/ need the Bearer key.
ROUTES = [
    (m, re.compile(p), name)
    for m, p, name in [
        ("POST", r"/transaction/initialize", "initialize"),
        ("GET", r"/transaction/verify(?:/(?P<reference>[^/]*))?", "verify"),
        ("GET", r"/transaction/?", "list_transactions"),
        ("GET", r"/transaction/(?P<transaction_id>[^/]+)/?", "fetch_transaction"),
        ("POST", r"/refund/?", "refund"),
        ("GET", r"/refund/?", "list_refunds"),
        ("GET", r"/refund/(?P<refund_id>[^/]+)/?", "fetch_refund"),
        ("GET", r"/checkout/(?P<code>[^/]+)", "checkout_page"),
        ("POST", r"/checkout/(?P<code>[^/]+)/(?P<action>pay|decline)", "checkout_action"),
        ("GET", r"/_sandbox/health", "control_health"),
        ("POST", r"/_sandbox/transactions", "control_create"),
        ("POST", r"/_sandbox/transactions/(?P<reference>[^/]+)/pay", "control_pay"),
        ("POST", r"/_sandbox/transactions/(?P<reference>[^/]+)/abandon", "control_abandon"),
        ("POST", r"/_sandbox/next-id", "control_next_id"),
        ("POST", r"/_sandbox/refunds", "control_refund"),
        ("POST", r"/_sandbox/refunds/(?P<refund_id>\d+)/finish", "control_finish_refund"),
        ("POST", r"/_sandbox/refunds/(?P<refund_id>\d+)/catch-up", "control_catch_up"),
        ("POST", r"/_sandbox/disputes", "control_open_dispute"),
        ("POST", r"/_sandbox/disputes/(?P<dispute_id>\d+)/remind", "control_remind_dispute"),
        ("POST", r"/_sandbox/disputes/(?P<dispute_id>\d+)/resolve", "control_resolve_dispute"),
        ("POST", r"/_sandbox/disputes/(?P<dispute_id>\d+)/send", "control_send_dispute_event"),
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


class Garbled(Exception):
    """Raised by a fault to answer 200 with a body no Paystack client can read."""

    def __init__(self, body: bytes, content_type: str) -> None:
        super().__init__(content_type)
        self.body, self.content_type = body, content_type


def positive_int(value: Any) -> int | None:
    """Amounts are integers in minor units: an int or an all-digit string, never a float or bool."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def numeric_id(text: str, message: str) -> int:
    """A path's numeric id (ASCII digits only), else 400 with Paystack's ``message``."""
    if not (text.isascii() and text.isdigit()):
        raise HTTPError(400, message)
    return int(text)


def number(body: dict[str, Any], key: str, default: float, cast: type = int) -> Any:
    """A non-negative ``cast`` number from a control request body, or 400."""
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise HTTPError(400, f"{key} must be a non-negative number")
    return cast(value)


def choice(body: dict[str, Any], key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or value not in allowed:
        raise HTTPError(400, f"{key} must be one of {', '.join(allowed)}")
    return value


def transaction_key(body: dict[str, Any]) -> str | int:
    """``transaction`` of a request body: a reference or a numeric id."""
    key = body.get("transaction")
    if not isinstance(key, str | int) or isinstance(key, bool) or key == "":
        raise HTTPError(400, "Transaction reference or id is required")
    return key


def optional_amount(body: dict[str, Any], key: str) -> int | None:
    if body.get(key) is None:
        return None
    amount = positive_int(body[key])
    if amount is None:
        raise HTTPError(400, "Invalid amount")
    return amount


def refund_plan(body: dict[str, Any]) -> RefundPlan:
    """The plan a control request gives for a refund (see the module docstring)."""
    steps = body.get("steps", [])
    if not isinstance(steps, list) or any(step not in REFUND_STEPS for step in steps):
        raise HTTPError(400, f"steps must be a list of {', '.join(REFUND_STEPS)}")
    catch_up_after = body.get("catch_up_after")
    return RefundPlan(
        outcome=choice(body, "outcome", "processed", (*REFUND_OUTCOMES, "pending")),
        steps=tuple(steps),
        lag=choice(body, "lag", "none", REFUND_LAGS),
        catch_up_after=None if catch_up_after is None else number(body, "catch_up_after", 0, float),
    )


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
        self,
        address: tuple[str, int],
        secret_key: str,
        config: Config,
        public_url: str | None,
        first_id: int = FIRST_ID,
    ) -> None:
        super().__init__(address, Handler)
        self.secret_key = secret_key
        self.store = Store(config, first_id)
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

    def charge_success(
        self, reference: str, *, times: int | None = None, delay: float | None = None
    ) -> None:
        """Post ``charge.success`` about a payment, in the background."""
        data = self.store.charge_event(reference)
        if data is not None:
            self.post_events([("charge.success", data)], reference, times=times, delay=delay)

    def post_events(
        self,
        events: list[tuple[str, dict[str, Any]]],
        reference: str,
        *,
        times: int | None = None,
        delay: float | None = None,
        wait: bool = False,
        retries: int | None = None,
    ) -> list[int | None]:
        """Post ``events`` about ``reference`` in order: ``times`` concurrent copies of each,
        each copy after ``delay`` seconds, the next event once the copies are answered.

        Returns every copy's final HTTP status (None = no answer) when ``wait``, else [] at
        once while a thread delivers.
        """
        default_times, default_delay = self.store.delivery(reference)
        times = default_times if times is None else times
        delay = default_delay if delay is None else delay
        config = self.store.config
        retries = config.webhook_retries if retries is None else retries
        url, pause = config.webhook_url, config.webhook_retry_delay
        signed = [self._sign(event, data) for event, data in events]
        results: list[int | None] = []

        def deliver(raw: bytes, signature: str, statuses: list[int | None], i: int) -> None:
            try:
                if delay:
                    time.sleep(delay)
                statuses[i] = self._post(url, raw, signature, retries, pause)
            finally:
                self.store.webhook_done()

        def deliver_all() -> None:
            for raw, signature in signed:
                statuses: list[int | None] = [None] * times
                args = [(raw, signature, statuses, i) for i in range(times)]
                copies = [threading.Thread(target=deliver, args=a, daemon=True) for a in args]
                for copy in copies:
                    copy.start()
                for copy in copies:
                    copy.join()
                results.extend(statuses)

        self.store.webhooks_queued(len(signed) * times)
        if wait:
            deliver_all()
            return results
        threading.Thread(target=deliver_all, daemon=True, name=f"webhook-{reference}").start()
        return []

    def _sign(self, event: str, data: dict[str, Any]) -> tuple[bytes, str]:
        """The body and its signature. Serialized once and those bytes signed: compact
        separators and raw UTF-8 (like Paystack), so a receiver that hashes re-serialized JSON
        instead of the raw body fails."""
        body = json.dumps({"event": event, "data": data}, separators=(",", ":"), ensure_ascii=False)
        raw = body.encode()
        return raw, hmac.new(self.secret_key.encode(), raw, hashlib.sha512).hexdigest()

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

    def catch_up_later(self, refund_id: int, plan: RefundPlan) -> None:
        """Let a lagging gateway catch up with a refund after the plan's delay, if it has one."""
        if plan.lag == "none" or plan.outcome == "pending" or plan.catch_up_after is None:
            return

        def catch_up() -> None:
            with contextlib.suppress(Refused):  # the refund is gone after a reset
                self.store.catch_up(refund_id)

        timer = threading.Timer(plan.catch_up_after, catch_up)
        timer.daemon = True
        timer.start()


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
        except Refused as exc:
            self.send_json(exc.status, {"status": False, "message": str(exc)})
        except Garbled as exc:
            self.send(200, exc.body, exc.content_type)
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

    def ok(self, message: str, data: Any, **extra: Any) -> None:
        """Paystack's success envelope."""
        self.send_json(200, {"status": True, "message": message, "data": data, **extra})

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
        if fault.fault == "200_html":
            raise Garbled(PROXY_PAGE.encode(), "text/html; charset=utf-8")
        if fault.fault == "200_no_status":
            raise Garbled(json.dumps(NO_STATUS).encode(), "application/json")
        time.sleep(fault.delay)  # "timeout": the client's own timeout should fire first

    def fault_about(self, endpoint: str, key: str | int | None) -> None:
        """``fault`` for a call about a transaction given by reference or id (or nothing)."""
        tx = self.server.store.find(key) if key not in (None, "") else None
        self.fault(endpoint, tx.reference if tx else (None if key is None else str(key)))

    def post_change(self, change: Change, body: dict[str, Any]) -> list[int | None]:
        """Post a change's webhooks as a control request asks (nothing if ``send`` is false)."""
        if body.get("send", True) is False:
            return []
        return self.server.post_events(
            change.events,
            change.reference,
            times=max(1, number(body, "times", 1)) if "times" in body else None,
            delay=number(body, "delay", 0, float) if "delay" in body else None,
            wait=bool(body.get("wait")),
            retries=number(body, "retries", 0) if "retries" in body else None,
        )

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
        self.ok("Authorization URL created", data)

    def verify(self, reference: str) -> None:
        self.fault("verify", reference or None)
        if not reference:  # Paystack falls through to fetch-by-id
            raise HTTPError(400, "Transaction ID should be numeric")
        data = self.server.store.report(reference)
        if data is None:
            raise HTTPError(400, "Transaction reference not found", code="transaction_not_found")
        self.ok("Verification successful", data)

    def fetch_transaction(self, transaction_id: str) -> None:
        self.fault_about("fetch", transaction_id)
        tx_id = numeric_id(transaction_id, "Transaction ID should be numeric")
        data = self.server.store.report(tx_id)
        if data is None:
            raise HTTPError(404, "Transaction not found")
        self.ok("Transaction retrieved", data)

    def list_transactions(self) -> None:
        self.fault("list", None)
        q = self.query
        per_page = positive_int(q.get("perPage") or q.get("per_page")) or 50
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
        if q.get("use_cursor", "").lower() in ("true", "1") or "next" in q or "previous" in q:
            try:
                data, meta = cursor_page(items, per_page, q.get("next"), q.get("previous"))
            except ValueError as exc:
                raise HTTPError(400, str(exc)) from None
        else:
            data, meta = offset_page(items, positive_int(q.get("page")) or 1, per_page)
            meta["total_volume"] = sum(t["amount"] for t in items)
        self.ok("Transactions retrieved", data, meta=meta)

    def refund(self) -> None:
        body = self.body()
        key = transaction_key(body)
        self.fault_about("refund", key)
        change = self.server.store.create_refund(key, optional_amount(body, "amount"), RefundPlan())
        self.server.post_events(change.events, change.reference)
        self.ok("Refund has been queued for processing", change.created)

    def list_refunds(self) -> None:
        q = self.query
        transaction = q.get("transaction") or q.get("reference")  # "reference": older docs
        self.fault_about("refund_list", transaction)
        per_page = positive_int(q.get("perPage") or q.get("per_page")) or 50
        records = self.server.store.refund_records(transaction)
        data, meta = offset_page(records, positive_int(q.get("page")) or 1, per_page)
        meta["perPage"] = str(per_page)
        meta["failedRefundCount"] = sum(r["status"] == "failed" for r in records)
        self.ok("Refunds retrieved", data, meta=meta)

    def fetch_refund(self, refund_id: str) -> None:
        record = None
        if refund_id.isascii() and refund_id.isdigit():
            record = self.server.store.refund_record(int(refund_id))
        self.fault("refund_fetch", record["transaction_reference"] if record else None)
        if record is None:
            raise HTTPError(404, "Refund not found")
        self.ok("Refund retrieved", record)

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
            self.server.charge_success(tx.reference)
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
        self.server.charge_success(reference, times=times, delay=delay)
        self.send_json(200, {"reference": reference, "status": "success"})

    def control_abandon(self, reference: str) -> None:
        store = self.server.store
        if store.get(reference) is None:
            raise HTTPError(404, "Transaction reference not found")
        if store.settle(reference, "abandoned", PAYABLE) is None:
            raise HTTPError(409, "Transaction is not awaiting payment")
        self.send_json(200, {"reference": reference, "status": "abandoned"})

    def control_next_id(self) -> None:
        next_id = self.body().get("id")
        if not isinstance(next_id, int) or isinstance(next_id, bool):
            raise HTTPError(400, "id must be an integer")
        self.send_json(200, {"next_id": self.server.store.set_next_id(next_id)})

    def control_refund(self) -> None:
        body = self.body()
        plan = refund_plan(body)
        change = self.server.store.create_refund(
            transaction_key(body), optional_amount(body, "amount"), plan
        )
        self.post_change(change, body)
        self.server.catch_up_later(change.data["id"], plan)
        self.send_json(200, change.data)

    def control_finish_refund(self, refund_id: str) -> None:
        body = self.body()
        plan = refund_plan(body)
        change = self.server.store.finish_refund(int(refund_id), plan)
        self.post_change(change, body)
        self.server.catch_up_later(int(refund_id), plan)
        self.send_json(200, change.data)

    def control_catch_up(self, refund_id: str) -> None:
        self.send_json(200, self.server.store.catch_up(int(refund_id)))

    def control_open_dispute(self) -> None:
        body = self.body()
        amount = optional_amount(body, "refund_amount")
        change = self.server.store.open_dispute(transaction_key(body), amount)
        self.post_change(change, body)
        self.send_json(200, change.data)

    def control_remind_dispute(self, dispute_id: str) -> None:
        body = self.body()
        change = self.server.store.remind_dispute(int(dispute_id))
        self.post_change(change, body)
        self.send_json(200, change.data)

    def control_resolve_dispute(self, dispute_id: str) -> None:
        body = self.body()
        outcome = choice(body, "outcome", "", ("lost", "won"))
        resolution = body.get("resolution")
        if resolution is not None and not isinstance(resolution, str):
            raise HTTPError(400, "resolution must be a string")
        change = self.server.store.resolve_dispute(
            int(dispute_id), lost=outcome == "lost", resolution=resolution
        )
        self.post_change(change, body)
        self.send_json(200, change.data)

    def control_send_dispute_event(self, dispute_id: str) -> None:
        body = self.body()
        name = str(body.get("event", "")).removeprefix("charge.dispute.")
        if name not in DISPUTE_EVENTS:
            raise HTTPError(400, f"event must be one of {', '.join(DISPUTE_EVENTS)}")
        change = self.server.store.dispute_event(int(dispute_id), f"charge.dispute.{name}")
        self.send_json(200, {"statuses": self.post_change(change, {**body, "send": True})})

    def control_deliver(self) -> None:
        body = self.body()
        event = body.get("event", "charge.success")
        refunds = tuple(f"refund.{status}" for status in (*REFUND_STEPS, *REFUND_OUTCOMES))
        if event != "charge.success" and event not in refunds:
            raise HTTPError(400, f"event must be charge.success or one of {', '.join(refunds)}")
        reference = str(body.get("reference"))
        refund_id = body.get("refund")
        if refund_id is not None and positive_int(refund_id) != refund_id:
            raise HTTPError(400, "refund must be a refund id")
        store = self.server.store
        if event == "charge.success":
            data = store.charge_event(reference)
        else:
            data = store.refund_event(reference, refund_id, event.removeprefix("refund."))
        if data is None:
            raise HTTPError(404, "Transaction reference not found")
        retries = number(body, "retries", 0) if "retries" in body else None
        statuses = self.server.post_events(
            [(event, data)],
            reference,
            times=max(1, number(body, "times", 1)),
            delay=number(body, "delay", 0, float),
            wait=bool(body.get("wait")),
            retries=retries,
        )
        self.send_json(200, {"statuses": statuses})

    def control_faults(self) -> None:
        self.send_json(200, {"faults": self.server.store.edit_faults()})

    def control_add_fault(self) -> None:
        body = self.body()
        endpoint = choice(body, "endpoint", "any", (*ENDPOINTS, "any"))
        kind = choice(body, "fault", "", FAULT_KINDS)
        reference = body.get("reference")
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
            if not isinstance(body.get("reverse_on_partial_refund", False), bool):
                raise HTTPError(400, "reverse_on_partial_refund must be true or false")
            c = store.config
            changes = {  # validate everything before changing anything
                "webhook_url": body.get("webhook_url", c.webhook_url),
                "webhook_times": max(1, number(body, "webhook_times", c.webhook_times)),
                "webhook_delay": number(body, "webhook_delay", c.webhook_delay, float),
                "webhook_retries": number(body, "webhook_retries", c.webhook_retries),
                "webhook_retry_delay": number(
                    body, "webhook_retry_delay", c.webhook_retry_delay, float
                ),
                "reverse_on_partial_refund": body.get(
                    "reverse_on_partial_refund", c.reverse_on_partial_refund
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
    first_id: int = FIRST_ID,
) -> SandboxServer:
    """Bind (port 0 picks a free port; see ``server.url``) without serving yet.

    ``first_id`` numbers the transactions (ids above 2**63 - 1 test overflow handling).
    """
    if not 0 < first_id <= MAX_ID:
        raise ValueError(f"first_id must be from 1 to {MAX_ID}")
    config = Config(
        webhook_url=webhook_url,
        webhook_retries=webhook_retries,
        webhook_retry_delay=webhook_retry_delay,
    )
    return SandboxServer((host, port), secret_key, config, public_url, first_id)


def start_in_thread(*args: Any, **kwargs: Any) -> SandboxServer:
    """``make_server(...)`` and serve it on a daemon thread; stop with ``shutdown()``."""
    server = make_server(*args, **kwargs)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="sandbox"
    ).start()
    return server
