"""The ingest baseline: the least a correct webhook endpoint can do.

Check the HMAC of the raw body, insert one row, enqueue one task, answer 200. tally's
endpoint does this and more (size limit, address check, parsing and validating the event,
an upsert that dedupes repeats, metrics); the ratio to this view is what that costs.
"""

import hashlib
import hmac

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bench.baseline_tasks import bare_event
from bench.environment import BASELINE_TABLE

_INSERT = f"INSERT INTO {BASELINE_TABLE} (raw_body) VALUES (%s) RETURNING id"


@csrf_exempt
@require_POST
def bare_webhook(request: HttpRequest) -> JsonResponse:
    body = request.body
    expected = hmac.new(settings.PAYSTACK_SECRET_KEY.encode(), body, hashlib.sha512).hexdigest()
    provided = request.headers.get("x-paystack-signature", "")
    if not hmac.compare_digest(expected.encode(), provided.encode()):
        return JsonResponse({"error": "signature missing or wrong"}, status=401)
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, [body.decode()])
        (row_id,) = cursor.fetchone()
    bare_event.delay(row_id)  # autocommit: the row is committed already
    return JsonResponse({"stored": True})
