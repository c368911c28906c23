"""`sort`, `limit` and `cursor` on the groups and agents reports.

The rows of a range are few (one per group or agent) and computed whole, so
they are sorted and cut here. The cursor is the sort key of the last row sent
(keyset paging): a page never repeats or skips a row that stays in the report,
whatever changed since the previous page.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson

from shared.http import ApiError

MAX_LIMIT = 1000
GROUP_SORTS = ("group_id", "stints", "answered", "abandoned", "transferred_out",
               "queue_time.count", "queue_time.avg_ms", "queue_time.p50_ms",
               "queue_time.p90_ms", "queue_time.p95_ms")  # fmt: skip
AGENT_SORTS = ("agent_id", "stints", "agent_messages", "first_responses", "tickets_closed",
               "handle_time.count", "handle_time.avg_ms", "handle_time.p50_ms",
               "handle_time.p90_ms", "handle_time.p95_ms")  # fmt: skip

Key = tuple[Any, ...]


def sort_values(fields: tuple[str, ...]) -> tuple[str, ...]:
    """Each field ascending, and descending with a leading `-`."""
    return (*fields, *(f"-{f}" for f in fields))


def _key(sort: str, id_field: str) -> Callable[[dict[str, Any]], Key]:
    path = sort.split(".")

    def key(row: dict[str, Any]) -> Key:
        value: Any = row
        for part in path:
            value = value[part]
        # Nulls (stats of no stint) sort as the smallest value, then by id.
        return (value is not None, value if value is not None else 0, row[id_field])

    return key


def encode_cursor(sort: str, key: Key) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([sort, list(key)])).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> Key:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        given, key = orjson.loads(raw)
        if given != sort or not isinstance(key, list) or len(key) != 3:
            raise ValueError("another sort")
        return (bool(key[0]), key[1], str(key[2]))
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_cursor", "cursor is not one of this sort's") from exc


def page(
    rows: list[dict[str, Any]], id_field: str, sort: str, limit: int | None, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """(the rows of the page, the cursor of the next one or None)."""
    descending = sort.startswith("-")
    key = _key(sort.removeprefix("-"), id_field)
    ordered = sorted(rows, key=key, reverse=descending)
    if cursor is not None:
        after = decode_cursor(cursor, sort)
        try:
            ordered = [r for r in ordered if (key(r) < after if descending else key(r) > after)]
        except TypeError as exc:  # a forged cursor holding another type
            raise ApiError(400, "invalid_cursor", "cursor is not one of this sort's") from exc
    if limit is None or len(ordered) <= limit:
        return ordered, None
    shown = ordered[:limit]
    return shown, encode_cursor(sort, key(shown[-1]))
