"""Rate limits per client address on the public surfaces that cost work: each order opens a
pending payment and a Paystack initialize call, each callback asks a worker for a verify
(docs/contract.md, guarantee 8). Counted in the shared cache by django-ratelimit, so the limit
holds across every web process."""

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

from config.clients import client_ip

logger = logging.getLogger(__name__)

# Every request whose client address is unknown (an X-Forwarded-For shorter than PROXY_HOPS)
# shares this one bucket: never a key the client wrote itself.
UNKNOWN_CLIENT = "unknown"


def seconds_to_wait(request: HttpRequest, *, group: str) -> int | None:
    """Count this request against its client's RATE_LIMIT_PAYMENTS in `group`; None while it
    is within the limit, else the seconds until the client's window ends (for Retry-After).

    If Redis cannot be asked, the request is let through with a warning: a cache outage must
    not stop voting, and the payments themselves do not need Redis.
    """
    try:
        usage: dict[str, Any] | None = get_usage(
            request,
            group=group,
            key=_client_key,
            rate=settings.RATE_LIMIT_PAYMENTS,
            increment=True,
        )
    except RedisError as exc:
        logger.warning(
            "rate limit unavailable; request let through",
            extra={"group": group, "error": f"{type(exc).__name__}: {exc}"[:200]},
        )
        return None
    if usage is None or not usage["should_limit"]:
        return None
    return max(int(usage["time_left"]), 1)


def _client_key(group: str, request: HttpRequest) -> str:
    return client_ip(request) or UNKNOWN_CLIENT
