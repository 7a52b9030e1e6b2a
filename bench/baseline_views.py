"""The ingest baseline: everything a correct webhook endpoint must do, and nothing else.

Refuse a body over WEBHOOK_MAX_BYTES before reading it, check the HMAC-SHA512 of the raw body,
insert one row, publish one task once the row is committed, answer 200. It is served by a
gunicorn like tally's, under tally's settings (the same middleware, persistent database
connections with CONN_MAX_AGE, the same Celery producer pool), so tally's endpoint differs
from it only by what tally adds for its guarantees: the address allowlist, parsing and
validating the event, the upsert that counts repeats instead of storing them twice, and
metrics (docs/benchmark.md, "Baselines").
"""

import hashlib
import hmac

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bench.baseline_tasks import bare_event
from bench.environment import BASELINE_TABLE

_INSERT = f"INSERT INTO {BASELINE_TABLE} (raw_body) VALUES (%s) RETURNING id"


@csrf_exempt
@require_POST
def bare_webhook(request: HttpRequest) -> JsonResponse:
    declared = request.META.get("CONTENT_LENGTH", "")
    # Paystack always sends a length; a body without one is refused rather than read.
    if not declared.isdigit() or int(declared) > settings.WEBHOOK_MAX_BYTES:
        return JsonResponse({"error": "body too large, or of no declared length"}, status=413)
    body = request.body
    expected = hmac.new(settings.PAYSTACK_SECRET_KEY.encode(), body, hashlib.sha512).hexdigest()
    provided = request.headers.get("x-paystack-signature", "")
    if not hmac.compare_digest(expected.encode(), provided.encode()):
        return JsonResponse({"error": "signature missing or wrong"}, status=401)
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, [body.decode()])
        (row_id,) = cursor.fetchone()
    # Autocommit: the row is committed already and this publishes at once, as tally's
    # on_commit does after its upsert.
    transaction.on_commit(lambda: bare_event.delay(row_id))
    return JsonResponse({"stored": True})
