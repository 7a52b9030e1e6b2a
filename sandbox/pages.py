"""Paystack's two ways of paging a list, newest first (docs/paystack.md §6).

Offset pages (``page``, ``perPage``) shift when a payment arrives between two calls; cursors do
not: a cursor names the item it stands after (its ``created_at`` and ``id``), opaquely.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

Item = dict[str, Any]


def offset_page(items: list[Item], page: int, per_page: int) -> tuple[list[Item], dict[str, Any]]:
    """Page ``page`` (from 1) and its meta ``{total, skipped, perPage, page, pageCount}``."""
    total, skipped = len(items), (page - 1) * per_page
    meta = {
        "total": total,
        "skipped": skipped,
        "perPage": per_page,
        "page": page,
        "pageCount": -(-total // per_page),
    }
    return items[skipped : skipped + per_page], meta


def cursor_page(
    items: list[Item], per_page: int, after: str | None, before: str | None
) -> tuple[list[Item], dict[str, Any]]:
    """The page after cursor ``after`` (or before ``before``, or the first) and its meta
    ``{next, previous, perPage}``; a cursor is null where nothing lies beyond."""
    keys = [_key(item) for item in items]  # descending, like the items
    if after:
        mark = _decode(after)
        start = next((i for i, key in enumerate(keys) if key < mark), len(items))
    elif before:
        mark = _decode(before)
        end = next((i for i, key in enumerate(keys) if key <= mark), len(items))
        start = max(0, end - per_page)
    else:
        start = 0
    page = items[start : start + per_page]
    stop = start + len(page)
    meta = {
        "next": _encode(page[-1]) if page and stop < len(items) else None,
        "previous": _encode(page[0]) if page and start > 0 else None,
        "perPage": per_page,
    }
    return page, meta


def _key(item: Item) -> tuple[str, int]:
    # Paystack's timestamps are fixed-width ISO strings: their order is the order in time.
    return item["created_at"], item["id"]


def _encode(item: Item) -> str:
    created_at, item_id = _key(item)
    return base64.urlsafe_b64encode(f"{created_at}|{item_id}".encode()).decode()


def _decode(cursor: str) -> tuple[str, int]:
    """The key a cursor names; ValueError if it is not one of ours."""
    try:
        created_at, item_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return created_at, int(item_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(f"Invalid cursor: {cursor}") from None
