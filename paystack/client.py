"""The Paystack HTTP client: verify and initialize, with every failure sorted into
retryable (`GatewayUnavailable`) or final (`GatewayRejected`). docs/paystack.md has the facts."""

import threading
from datetime import datetime
from functools import lru_cache
from typing import Any

import requests
from django.conf import settings

from paystack.errors import GatewayRejected, GatewayUnavailable, ReferenceNotFound
from paystack.types import Initialization, Verification, is_reference

MAX_GATEWAY_ID = 2**64 - 1  # Paystack's ids are unsigned 64-bit (docs/paystack.md §7)


class PaystackClient:
    def __init__(self, *, base_url: str, secret_key: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret_key = secret_key
        self.timeout = timeout
        self._local = threading.local()  # one keep-alive session per thread

    @property
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.secret_key}"
            self._local.session = session
        return session

    def verify(self, reference: str) -> Verification:
        """Ask the gateway what happened to a reference (GET /transaction/verify/:reference)."""
        if not is_reference(reference):
            raise ReferenceNotFound(f"{reference!r} is not a Paystack reference")
        return _verification_from(self._call("GET", f"/transaction/verify/{reference}"))

    def initialize(
        self,
        *,
        email: str,
        amount: int,
        currency: str,
        reference: str,
        callback_url: str,
        metadata: dict[str, Any],
    ) -> Initialization:
        """Open a checkout for a payment (POST /transaction/initialize)."""
        data = self._call(
            "POST",
            "/transaction/initialize",
            json={
                "email": email,
                "amount": amount,
                "currency": currency,
                "reference": reference,
                "callback_url": callback_url,
                "metadata": metadata,
            },
        )
        try:
            return Initialization(
                authorization_url=str(data["authorization_url"]),
                access_code=str(data["access_code"]),
                reference=str(data["reference"]),
            )
        except (KeyError, TypeError):
            raise GatewayUnavailable("initialize answered without an authorization_url") from None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's `data` when its `status` is true, else an error."""
        try:
            response = self._session.request(
                method, self.base_url + path, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise GatewayUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        status = response.status_code
        if status == 429:
            raise GatewayUnavailable(
                f"{method} {path}: 429 {message}", retry_after=_retry_after(response)
            )
        if status >= 500:
            raise GatewayUnavailable(f"{method} {path}: {status} {message}")
        if status in (400, 404) and message.startswith("Transaction reference not found"):
            raise ReferenceNotFound(f"{method} {path}: {message}")
        if status >= 400:
            raise GatewayRejected(f"{method} {path}: {status} {message}")
        if not isinstance(body, dict) or not isinstance(body.get("status"), bool):
            # A 2xx that is not Paystack's envelope (a proxy's page, a cut body) is no verdict.
            raise GatewayUnavailable(f"{method} {path}: {status} answer is not Paystack's JSON")
        if not body["status"]:
            raise GatewayRejected(f"{method} {path}: {status} {message}")
        return body.get("data")


def _retry_after(response: requests.Response) -> float | None:
    for header in ("Retry-After", "x-ratelimit-reset"):
        value = response.headers.get(header, "")
        if value.isdigit():
            return float(value)
    return None


def _is_gateway_id(value: object) -> bool:
    """A positive unsigned 64-bit int: Python's int holds it, whatever a database column does."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_GATEWAY_ID


def _gateway_id(value: object) -> int:
    """A Paystack id: an int or an all-digit string, unsigned 64-bit; else ValueError."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and _is_gateway_id(value):
        return value
    raise ValueError(f"{value!r} is not a Paystack id")


def _minor_units(value: object) -> int:
    """An amount: an int or an all-digit string (refund events send both), never a float."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"amount {value!r} is not an integer")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{value!r} is not a non-empty string")
    return value


def _moment(value: object) -> datetime | None:
    """A Paystack timestamp (`2025-03-14T18:02:11.000Z`), or None when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a timestamp")
    return datetime.fromisoformat(value)


def _verification_from(data: Any) -> Verification:
    try:
        gateway_id = data.get("id")
        return Verification(
            reference=_text(data["reference"]),
            status=_text(data["status"]),
            amount=_minor_units(data["amount"]),
            currency=_text(data["currency"]),
            gateway_id=_gateway_id(gateway_id) if gateway_id is not None else None,
            paid_at=_moment(data.get("paid_at") or data.get("paidAt")),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # A garbled answer is not a verdict: treat it like an outage and ask again later.
        raise GatewayUnavailable(f"the gateway answered an unreadable transaction: {exc}") from None


@lru_cache(maxsize=1)
def gateway() -> PaystackClient:
    """The process-wide client, built from settings on first use."""
    return PaystackClient(
        base_url=settings.PAYSTACK_BASE_URL,
        secret_key=settings.PAYSTACK_SECRET_KEY,
        timeout=settings.PAYSTACK_TIMEOUT,
    )
