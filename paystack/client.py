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


class PaystackClient:
    def __init__(self, *, base_url: str, secret_key: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret_key = secret_key
        self.timeout = timeout
        self._local = threading.local()  # one keep-alive session per thread

    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
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
        try:
            response = self._session.request(
                method, self.base_url + path, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise GatewayUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        if response.status_code == 429:
            raise GatewayUnavailable(
                f"{method} {path}: 429 {message}", retry_after=_retry_after(response)
            )
        if response.status_code >= 500:
            raise GatewayUnavailable(f"{method} {path}: {response.status_code} {message}")
        if response.status_code in (400, 404) and message.startswith(
            "Transaction reference not found"
        ):
            raise ReferenceNotFound(f"{method} {path}: {message}")
        if response.status_code >= 400 or not isinstance(body, dict) or not body.get("status"):
            raise GatewayRejected(f"{method} {path}: {response.status_code} {message}")
        return body.get("data")


def _retry_after(response: requests.Response) -> float | None:
    for header in ("Retry-After", "x-ratelimit-reset"):
        value = response.headers.get(header, "")
        if value.isdigit():
            return float(value)
    return None


def _verification_from(data: Any) -> Verification:
    try:
        amount = data["amount"]
        if isinstance(amount, str) and amount.isdigit():
            amount = int(amount)
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise TypeError("amount is not an integer")
        paid_at = data.get("paid_at") or data.get("paidAt")
        gateway_id = data.get("id")
        return Verification(
            reference=str(data["reference"]),
            status=str(data["status"]),
            amount=amount,
            currency=str(data["currency"]),
            gateway_id=int(gateway_id) if gateway_id is not None else None,
            paid_at=datetime.fromisoformat(paid_at) if paid_at else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        # A garbled answer is not a verdict: treat it like an outage and ask again later.
        raise GatewayUnavailable(f"verify answered an unreadable transaction: {exc}") from None


@lru_cache(maxsize=1)
def gateway() -> PaystackClient:
    """The process-wide client, built from settings on first use."""
    return PaystackClient(
        base_url=settings.PAYSTACK_BASE_URL,
        secret_key=settings.PAYSTACK_SECRET_KEY,
        timeout=settings.PAYSTACK_TIMEOUT,
    )
