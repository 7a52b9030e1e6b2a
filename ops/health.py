"""Liveness and readiness for load balancers and orchestrators."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 2.0


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when PostgreSQL, the broker and Redis answer within 2 s; else 503 naming which not.

    The answer names a failing check and nothing more: its error text would tell anyone who
    can reach the port our database host, port and role and the broker's address. The
    details go to the log.
    """
    checks = {"postgresql": _check_database, "broker": _check_broker}
    if settings.REDIS_URL != settings.CELERY_BROKER_URL:
        checks["redis"] = _check_redis
    # Threads of this request only: a check hung on a dead host must not occupy a shared pool
    # and make the next probe blame a healthy service. All checks share one deadline.
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    futures = {name: pool.submit(check) for name, check in checks.items()}
    pool.shutdown(wait=False)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    results: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=max(deadline - time.monotonic(), 0))
            results[name] = "ok"
        except FutureTimeout:
            results[name] = "failing"
            _log_failure(name, f"no answer within {READY_TIMEOUT_SECONDS:g} s")
        except Exception as exc:  # any failure means not ready; the answer says which
            results[name] = "failing"
            _log_failure(name, f"{type(exc).__name__}: {exc}"[:200])
    failing = sorted(name for name, result in results.items() if result != "ok")
    status = 503 if failing else 200
    return JsonResponse(
        {"status": "ok" if not failing else "unavailable", "checks": results, "failing": failing},
        status=status,
    )


def _log_failure(check: str, error: str) -> None:
    logger.warning("readiness check failing", extra={"check": check, "error": error})


def _check_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # this runs on a pool thread; don't leave its connection behind


def _check_redis() -> None:
    _ping_redis(settings.REDIS_URL)


def _check_broker() -> None:
    if urlsplit(settings.CELERY_BROKER_URL).scheme.startswith("redis"):
        _ping_redis(settings.CELERY_BROKER_URL)
        return
    from config.celery_app import app

    # An AMQP connect is a real handshake with the broker, not just an open port. kombu only
    # compares the timeout with elapsed seconds, so a float is fine; its stubs say int.
    with app.connection_for_read() as broker:
        broker.ensure_connection(max_retries=1, timeout=READY_TIMEOUT_SECONDS)  # type: ignore[arg-type]


def _ping_redis(url: str) -> None:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=READY_TIMEOUT_SECONDS, socket_timeout=READY_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()
