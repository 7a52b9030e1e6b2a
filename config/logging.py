"""Log formatters: one JSON object per line in production, readable lines in development."""

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=` and is context.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def _context(record: logging.LogRecord) -> dict[str, Any]:
    context = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}
    if "task_id" not in context:
        task_id = _current_task_id()
        if task_id:
            context["task_id"] = task_id
    return context


def _current_task_id() -> str | None:
    """The id of the Celery task this line is logged from, so every task line carries it."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    return getattr(request, "id", None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()} {context}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line
