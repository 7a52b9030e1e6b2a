"""Log formatters: one JSON object per line in production, readable lines in development.

Also the last line of defence against leaking the Paystack secret key (RedactSecrets), and
the stamps that tie each line to the Celery task (stamp_task_ids) and, with tracing on, the
trace and span (stamp_trace_ids) that wrote it.
"""

import contextlib
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import current_task
from django.conf import settings

# Where a record made inside a Celery task keeps the task's id (see stamp_task_ids). Private,
# so that a log call passing extra={"task_id": ...} still works (LogRecord refuses to let
# `extra` overwrite an attribute it already has).
_TASK_ID_ATTR = "_tally_task_id"

# Where a record made inside a traced span keeps (trace id, span id); see stamp_trace_ids.
_TRACE_IDS_ATTR = "_tally_trace_ids"

# Attributes every LogRecord has; anything else on a record came from `extra=` and is context.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    _TASK_ID_ATTR,
    _TRACE_IDS_ATTR,
}


def _context(record: logging.LogRecord) -> dict[str, Any]:
    context = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}
    if "task_id" not in context:
        task_id = getattr(record, _TASK_ID_ATTR, None) or _current_task_id()
        if task_id:
            context["task_id"] = task_id
    trace_ids = getattr(record, _TRACE_IDS_ATTR, None)
    if trace_ids is not None:
        context.setdefault("trace_id", trace_ids[0])
        context.setdefault("span_id", trace_ids[1])
    return context


def _current_task_id() -> str | None:
    """The id of the Celery task running in this thread now, if any."""
    request = getattr(current_task, "request", None)
    return getattr(request, "id", None)


def stamp_task_ids() -> None:
    """Record the running task's id on each LogRecord when it is created.

    The formatters look the task up again as a fallback, but only a stamp made at creation
    survives a line formatted later, after the task has finished: by a queue handler, or
    by pytest's caplog. Safe to call more than once.
    """
    _stamp_each_record(_TASK_ID_ATTR, _current_task_id)


def stamp_trace_ids(current_ids: Callable[[], tuple[str, str] | None]) -> None:
    """Record the current span's (trace id, span id) on each LogRecord when it is created.

    config/tracing.py calls this only when tracing is on, with a function that asks
    OpenTelemetry; this module never imports it. Stamped at creation, like the task id, so
    a line formatted later still names the span that wrote it. Safe to call more than once.
    """
    _stamp_each_record(_TRACE_IDS_ATTR, current_ids)


def _stamp_each_record(attr: str, current: Callable[[], object]) -> None:
    """Wrap the record factory so that each new record gets `current()` as `attr` (unless
    it is empty). The attributes stamped so far travel along the chain of factories, so a
    second call for the same one changes nothing, whatever was wrapped in between."""
    make_record = logging.getLogRecordFactory()
    stamped: tuple[str, ...] = getattr(make_record, "stamped_attrs", ())
    if attr in stamped:
        return

    def make_stamped_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        value = current()
        if value:
            setattr(record, attr, value)
        return record

    make_stamped_record.stamped_attrs = (*stamped, attr)  # type: ignore[attr-defined]  # read above
    logging.setLogRecordFactory(make_stamped_record)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    # exc_text is set by RedactSecrets (already redacted) or by an earlier formatter. Callers
    # come here only when one of the two is set, so exc_info is never None here.
    return record.exc_text or formatter.formatException(record.exc_info)  # type: ignore[arg-type]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if record.exc_info or record.exc_text:
            entry["exc_info"] = _exception_text(self, record)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()} {context}".rstrip()
        if record.exc_info or record.exc_text:
            line += "\n" + _exception_text(self, record)
        return line


# Paystack secret keys: sk_live_ or sk_test_ and 40 hex digits; any length is caught here.
_SECRET_KEY = re.compile(r"\b(sk_(?:live|test)_)[A-Za-z0-9]+")
_REDACTED = r"\1[redacted]"
_MIN_LITERAL_KEY_LENGTH = 8  # a configured key shorter than this would redact ordinary words


class RedactSecrets(logging.Filter):
    """Hide Paystack secret keys in a record's message, `extra` values and traceback.

    Code should never log a key, a signature or an Authorization header; this catches the
    mistake that slips through (an exception whose text includes a header, a repr of a
    client). It redacts anything shaped like `sk_live_…`/`sk_test_…`, and the configured
    PAYSTACK_SECRET_KEY(_PREVIOUS) verbatim, whatever its shape (a sandbox key, say).
    Attach it to handlers: a filter on the root logger does not see records propagated from
    other loggers. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # A filter that raises would break the caller's log call. A record this fails on
        # (say, %-args that do not match the message) fails again in the formatter, and
        # logging reports it there without writing the line.
        with contextlib.suppress(Exception):
            self._redact_record(record, _redactor())
        return True

    def _redact_record(self, record: logging.LogRecord, redact: Callable[[str], str]) -> None:
        message = record.getMessage()
        if redact(message) != message:
            record.msg, record.args = redact(message), ()
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRS:
                setattr(record, name, _redact_value(value, redact))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)


def _redact_value(value: Any, redact: Callable[[str], str]) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item, redact) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item, redact) for item in value]
    text = str(value)  # what the formatters would write for it
    redacted = redact(text)
    return value if redacted == text else redacted


def _redactor() -> Callable[[str], str]:
    literal_keys = _configured_keys()

    def redact(text: str) -> str:
        for key in literal_keys:
            text = text.replace(key, "[redacted]")
        return _SECRET_KEY.sub(_REDACTED, text)

    return redact


def _configured_keys() -> tuple[str, ...]:
    if not settings.configured:
        return ()
    keys = (
        getattr(settings, "PAYSTACK_SECRET_KEY", ""),
        getattr(settings, "PAYSTACK_SECRET_KEY_PREVIOUS", ""),
    )
    return tuple(key for key in keys if len(key) >= _MIN_LITERAL_KEY_LENGTH)
