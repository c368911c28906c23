"""`/realtime`: the tenant's current day, from the DynamoDB view only (layout in
shared/realtime.py). It reads the open tickets and the day's quarter items:
its cost follows the tickets open now, not the tickets of the day."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson

from services.report.stats import merged_stats
from shared.events import format_ms, to_ms
from shared.histogram import percentiles
from shared.realtime import OPEN_FIELDS, OPEN_INDEX, OPEN_KEY, quarter_key, quarters_partition
from shared.rollups import PERCENTS, Rollup, decode_hists
from shared.timebuckets import QUARTER_S

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


def _value(attr: Mapping[str, Any]) -> Any:
    if "N" in attr:
        return int(attr["N"])
    if "BOOL" in attr:
        return bool(attr["BOOL"])
    if "B" in attr:
        return bytes(attr["B"])
    return attr.get("S")


async def _query(dynamodb: DynamoDBClient, **kwargs: Any) -> list[dict[str, Any]]:
    """Every page of a query, as plain values."""
    items: list[dict[str, Any]] = []
    while True:
        resp = await dynamodb.query(**kwargs)
        items.extend({k: _value(v) for k, v in item.items()} for item in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def today_bounds(now: datetime, tz: ZoneInfo) -> tuple[int, int]:
    day = now.astimezone(tz).date()
    start = datetime.combine(day, time(), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)
    return to_ms(start), to_ms(end)


def view(open_now: list[dict[str, Any]], quarters: list[dict[str, Any]]) -> dict[str, Any]:
    """The response, from the open tickets and the day's quarter items."""
    day = Rollup()
    for quarter in quarters:
        day.add(Rollup(orjson.loads(quarter["cells"]), decode_hists(quarter["hists"])))
    cells = day.cells

    def stats(kind: str) -> dict[str, Any]:
        return merged_stats(cells.get(kind), percentiles(day.hists.get(kind, {}), PERCENTS))

    waiting = [t for t in open_now if t.get("status") == "waiting"]
    assigned = [t for t in open_now if t.get("status") == "assigned"]
    since = [t["queue_since"] for t in waiting if t.get("queue_since") is not None]

    def count(kind: str) -> int:
        return cells[kind][0] if kind in cells else 0

    return {
        "tickets_created": count("created"),
        "tickets_closed": count("closed"),
        "tickets_abandoned": count("abandoned"),
        "waiting_now": {
            "total": len(waiting),
            "by_group": dict(sorted(Counter(str(t.get("group_id")) for t in waiting).items())),
        },
        "assigned_now": {
            "total": len(assigned),
            "by_agent": dict(sorted(Counter(str(t.get("agent_id")) for t in assigned).items())),
        },
        "oldest_waiting_since": format_ms(min(since)) if since else None,
        "wait_time": stats("assigned"),
        "first_response_time": stats("first_response"),
    }


async def realtime_view(
    dynamodb: DynamoDBClient, table: str, tenant: str, start_ms: int, end_ms: int
) -> dict[str, Any]:
    """The tenant's day [start_ms, end_ms), whose edges are quarter hours (every
    zone offset in use is a multiple of 15 minutes)."""
    open_now = await _query(
        dynamodb,
        TableName=table,
        IndexName=OPEN_INDEX,
        KeyConditionExpression=f"{OPEN_KEY} = :t",
        ExpressionAttributeValues={":t": {"S": tenant}},
        # only what the view counts: each open ticket's keys are bytes read for nothing
        ProjectionExpression=", ".join(f"#{name}" for name in OPEN_FIELDS),
        ExpressionAttributeNames={f"#{name}": name for name in OPEN_FIELDS},  # `status` is reserved
    )
    first, last = quarter_key(start_ms // 1000), quarter_key(end_ms // 1000 - QUARTER_S)
    quarters = await _query(
        dynamodb,
        TableName=table,
        KeyConditionExpression="tenant_id = :p AND ticket_id BETWEEN :lo AND :hi",
        ExpressionAttributeValues={
            ":p": {"S": quarters_partition(tenant)}, ":lo": {"S": first}, ":hi": {"S": last}
        },
    )  # fmt: skip
    return view(open_now, quarters)
