"""Paging a list, newest first, as Paystack does (docs/paystack.md §6)."""

from __future__ import annotations

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
