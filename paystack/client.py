"""The Paystack HTTP client: verify, fetch, list and initialize transactions, read refunds,
with every failure sorted into retryable (`GatewayUnavailable`) or final (`GatewayRejected`).
docs/paystack.md has the facts."""

import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

import requests
import requests.auth
from django.conf import settings

from paystack.errors import (
    GatewayRejected,
    GatewayUnavailable,
    RateLimited,
    ReferenceNotFound,
    TransactionNotFound,
)
from paystack.types import (
    Initialization,
    RefundRecord,
    TransactionPage,
    Verification,
    is_reference,
)

MAX_GATEWAY_ID = 2**64 - 1  # Paystack's ids are unsigned 64-bit (docs/paystack.md §7)
# A 400 or 404 whose message starts so says "no such transaction" (docs/paystack.md §5).
_NOT_FOUND: tuple[tuple[str, type[TransactionNotFound]], ...] = (
    ("Transaction reference not found", ReferenceNotFound),
    ("Transaction not found", TransactionNotFound),
)
_REFUNDS_PER_PAGE = 100
Record = TypeVar("Record", Verification, RefundRecord)


class _Bearer(requests.auth.AuthBase):
    """Paystack's secret key as a bearer token on every request."""

    def __init__(self, secret_key: str) -> None:
        self.header = f"Bearer {secret_key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self.header
        return request


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
            # As session.auth, not a default header: requests then skips its ~/.netrc lookup
            # (a file-system check on every call, seen in the worker's profile).
            session.auth = _Bearer(self.secret_key)
            self._local.session = session
        return session

    def verify(self, reference: str) -> Verification:
        """Ask the gateway what happened to a reference (GET /transaction/verify/:reference)."""
        if not is_reference(reference):
            raise ReferenceNotFound(f"{reference!r} is not a Paystack reference")
        return _verification_from(self._call("GET", f"/transaction/verify/{reference}"))

    def fetch_transaction(self, gateway_id: int) -> Verification:
        """One transaction by the gateway's id (GET /transaction/:id), shaped as verify's.

        Raises TransactionNotFound when the gateway knows no such id (or it is not one).
        """
        if not _is_gateway_id(gateway_id):
            raise TransactionNotFound(f"{gateway_id!r} is not a Paystack transaction id")
        return _verification_from(self._call("GET", f"/transaction/{gateway_id}"))

    def list_transactions(
        self,
        *,
        since: datetime,
        until: datetime | None = None,
        status: str | None = None,
        per_page: int = 50,
        use_cursor: bool = False,
    ) -> Iterator[Verification]:
        """Every transaction created from `since` to `until`, newest first, each once.

        `transaction_pages` (same arguments) reads it; use that for progress figures.
        """
        for page in self.transaction_pages(
            since=since, until=until, status=status, per_page=per_page, use_cursor=use_cursor
        ):
            yield from page.transactions

    def transaction_pages(
        self,
        *,
        since: datetime,
        until: datetime | None = None,
        status: str | None = None,
        per_page: int = 50,
        use_cursor: bool = False,
    ) -> Iterator[TransactionPage]:
        """Page through GET /transaction: transactions created from `since` to `until` (aware
        datetimes), of `status` if given (success, failed, abandoned, reversed), newest first.
        Each page's `transactions` are those no earlier page gave; with the gateway's `total`
        and `page_count` when it sends them, for progress.

        1. Ask for the first page: `from`, `to`, `status`, `perPage`, and `use_cursor=true`
           when asked (cursors do not shift as payments arrive; offset pages do).
        2. Drop transactions an earlier page gave (same id): arrivals push items onto later
           offset pages. Yield the page.
        3. Follow the meta the gateway answered, whichever style it is: cursor meta
           (`next`) → ask for `next`; offset meta → ask for the next page number.
        4. Stop on an empty page; with cursors, on a null or empty `next` or one seen
           before; with offsets, after page `pageCount`, or when it is missing and a page
           brought nothing new (a gateway that ignores `page`).

        A page the client cannot read raises GatewayUnavailable: the listing is incomplete,
        start again later. The filter is on creation time: a payment refunded today but
        created before `since` is not listed.
        """
        query: dict[str, str | int] = {"perPage": per_page, "from": _instant(since)}
        if until is not None:
            query["to"] = _instant(until)
        if status is not None:
            query["status"] = status
        if use_cursor:
            query["use_cursor"] = "true"
        seen: set[int | str] = set()
        cursors: set[str] = set()
        number, params = 1, dict(query) if use_cursor else {**query, "page": 1}
        while True:
            body = self._envelope("GET", "/transaction", params=params)
            items, meta = _items_and_meta(body)
            if not items:
                return
            fresh = tuple(_fresh(map(_verification_from, items), seen))
            yield TransactionPage(
                number=number,
                transactions=fresh,
                total=_count(meta.get("total")),
                page_count=_count(meta.get("pageCount")),
            )
            if "next" in meta or "previous" in meta:  # cursor meta
                cursor = meta.get("next")
                if not isinstance(cursor, str) or not cursor or cursor in cursors:
                    return
                cursors.add(cursor)
                params = {**query, "use_cursor": "true", "next": cursor}
            elif _last_page(number, meta, fresh):
                return
            else:
                params = {**query, "page": number + 1}
            number += 1

    def list_refunds(self, *, transaction_id: int) -> list[RefundRecord]:
        """The gateway's refunds of one transaction (GET /refund?transaction=:id), newest first.

        Keeps only records of that transaction: a gateway that ignored the filter would
        otherwise hand us every refund of the integration.
        """
        if not _is_gateway_id(transaction_id):
            raise TransactionNotFound(f"{transaction_id!r} is not a Paystack transaction id")
        records: list[RefundRecord] = []
        seen: set[int | str] = set()
        page = 1
        while True:
            params = {"transaction": transaction_id, "perPage": _REFUNDS_PER_PAGE, "page": page}
            items, meta = _items_and_meta(self._envelope("GET", "/refund", params=params))
            fresh = tuple(_fresh(map(_refund_from, items), seen))
            records.extend(r for r in fresh if r.transaction_id == transaction_id)
            if _last_page(page, meta, fresh):
                return records
            page += 1

    def fetch_refund(self, refund_id: int) -> RefundRecord:
        """One refund by its id (GET /refund/:id)."""
        if not _is_gateway_id(refund_id):
            raise GatewayRejected(f"{refund_id!r} is not a Paystack refund id")
        return _refund_from(self._call("GET", f"/refund/{refund_id}"))

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
        """The `data` of a successful call (see `_envelope`)."""
        return self._envelope(method, path, **kwargs).get("data")

    def _envelope(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The answer's `{status, message, data, meta}` when `status` is true, else an error."""
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
            raise RateLimited(f"{method} {path}: 429 {message}", retry_after=_retry_after(response))
        if status >= 500:
            raise GatewayUnavailable(f"{method} {path}: {status} {message}")
        if status in (400, 404):
            for prefix, error in _NOT_FOUND:
                if message.startswith(prefix):
                    raise error(f"{method} {path}: {message}")
        if status >= 400:
            raise GatewayRejected(f"{method} {path}: {status} {message}")
        if not isinstance(body, dict) or not isinstance(body.get("status"), bool):
            # A 2xx that is not Paystack's envelope (a proxy's page, a cut body) is no verdict.
            raise GatewayUnavailable(f"{method} {path}: {status} answer is not Paystack's JSON")
        if not body["status"]:
            raise GatewayRejected(f"{method} {path}: {status} {message}")
        return body


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


def _instant(moment: datetime) -> str:
    """A list filter bound in Paystack's own format (UTC, milliseconds, Z)."""
    if moment.tzinfo is None:
        raise ValueError("list bounds must be timezone-aware datetimes")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _count(value: object) -> int | None:
    """A count in list meta (an int, or a digit string: Paystack sends both), else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _items_and_meta(body: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    items, meta = body.get("data"), body.get("meta")
    if not isinstance(items, list):
        raise GatewayUnavailable("a list call answered without a list")
    return items, meta if isinstance(meta, dict) else {}


def _fresh(records: Iterable[Record], seen: set[int | str]) -> Iterator[Record]:
    """Records not seen before (by id), noting them as seen."""
    for record in records:
        key = _key(record)
        if key not in seen:
            seen.add(key)
            yield record


def _key(record: Verification | RefundRecord) -> int | str:
    if isinstance(record, RefundRecord):
        return record.id
    return record.gateway_id if record.gateway_id is not None else record.reference


def _last_page(number: int, meta: dict[str, Any], fresh: tuple[object, ...]) -> bool:
    """Whether offset page `number` ends the listing: it is page `pageCount`, or the meta
    gives none and the page brought nothing new (an empty page, or a gateway ignoring `page`)."""
    page_count = _count(meta.get("pageCount"))
    return number >= page_count if page_count is not None else not fresh


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
            created_at=_moment(data.get("created_at") or data.get("createdAt")),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # A garbled answer is not a verdict: treat it like an outage and ask again later.
        raise GatewayUnavailable(f"the gateway answered an unreadable transaction: {exc}") from None


def _refund_from(data: Any) -> RefundRecord:
    try:
        transaction = data.get("transaction")
        # An id in the refund API; the whole transaction in POST /refund's answer.
        embedded = transaction if isinstance(transaction, dict) else {}
        transaction_id = embedded.get("id") if embedded else transaction
        reference = data.get("transaction_reference") or embedded.get("reference")
        return RefundRecord(
            id=_gateway_id(data["id"]),
            transaction_id=_gateway_id(transaction_id) if transaction_id is not None else None,
            transaction_reference=_text(reference) if reference is not None else None,
            amount=_minor_units(data["amount"]),
            currency=_text(data["currency"]),
            status=_text(data["status"]),
            refunded_at=_moment(data.get("refunded_at")),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise GatewayUnavailable(f"the gateway answered an unreadable refund: {exc}") from None


@lru_cache(maxsize=1)
def gateway() -> PaystackClient:
    """The process-wide client, built from settings on first use."""
    return PaystackClient(
        base_url=settings.PAYSTACK_BASE_URL,
        secret_key=settings.PAYSTACK_SECRET_KEY,
        timeout=settings.PAYSTACK_TIMEOUT,
    )
