import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from config.clients import client_address, parse_address
from config.metrics import webhook_deliveries
from webhooks.addresses import is_allowed
from webhooks.events import NotAnEvent, parse_event
from webhooks.services import record_delivery
from webhooks.signature import is_signed_by_any

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def paystack_webhook(request: HttpRequest) -> JsonResponse:
    """Store a signed Paystack event and answer fast; the worker does the rest."""
    body = _read_limited_body(request, settings.WEBHOOK_MAX_BYTES)
    if body is None:
        return _reject("rejected_413", 413, "body too large")
    # None when X-Forwarded-For is shorter than PROXY_HOPS: no allowlist admits an unknown.
    address = client_address(request, proxy_hops=settings.PROXY_HOPS)
    source_ip = parse_address(address) if address is not None else None
    if not is_allowed(source_ip, tuple(settings.PAYSTACK_WEBHOOK_IPS)):
        logger.warning("webhook from an address not allowed", extra={"source_ip": address})
        return _reject("rejected_403", 403, "address not allowed")
    keys = (settings.PAYSTACK_SECRET_KEY, settings.PAYSTACK_SECRET_KEY_PREVIOUS)
    if not is_signed_by_any(body, request.headers.get("x-paystack-signature"), keys):
        return _reject("rejected_401", 401, "signature missing or wrong")
    try:
        parsed = parse_event(body)
    except NotAnEvent as exc:
        return _reject("rejected_400", 400, str(exc))
    try:
        recorded = record_delivery(
            parsed=parsed, source_ip=str(source_ip) if source_ip is not None else None
        )
    except DatabaseError:
        logger.exception("database unavailable; Paystack will retry", extra={"event": parsed.event})
        return _reject("rejected_503", 503, "database unavailable", event=parsed.event)
    webhook_deliveries.labels(parsed.event, "new" if recorded.is_new else "repeat").inc()
    return JsonResponse({"stored": True, "repeat": not recorded.is_new})


def _read_limited_body(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than `limit`; never reads more than limit + 1."""
    declared = request.META.get("CONTENT_LENGTH", "")
    if declared.isdigit():
        return request.body if int(declared) <= limit else None
    # No Content-Length (chunked): read up to one byte past the limit to tell.
    body = request.META["wsgi.input"].read(limit + 1)
    return body if len(body) <= limit else None


def _reject(outcome: str, status: int, message: str, *, event: str = "") -> JsonResponse:
    webhook_deliveries.labels(event, outcome).inc()
    return JsonResponse({"error": message}, status=status)
