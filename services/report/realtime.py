"""`/realtime`: the tenant's current day, computed from the DynamoDB view only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from services.report.stats import stats
from shared.events import format_ms, to_ms

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


def _value(attr: Mapping[str, Any]) -> Any:
    if "N" in attr:
        return int(attr["N"])
    if "BOOL" in attr:
        return bool(attr["BOOL"])
    return attr.get("S")


async def tenant_items(dynamodb: DynamoDBClient, table: str, tenant: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "tenant_id = :t",
        "ExpressionAttributeValues": {":t": {"S": tenant}},
    }
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


def realtime_view(items: list[dict[str, Any]], start: int, end: int) -> dict[str, Any]:
    def today(t: int | None) -> bool:
        return t is not None and start <= t < end

    waiting = [i for i in items if i.get("status") == "waiting"]
    assigned = [i for i in items if i.get("status") == "assigned"]
    closed_today = [i for i in items if i.get("status") == "closed" and today(i.get("closed_at"))]
    by_group = Counter(str(i.get("group_id")) for i in waiting)
    by_agent = Counter(str(i.get("agent_id")) for i in assigned)
    since = [i["queue_since"] for i in waiting if i.get("queue_since") is not None]
    return {
        "tickets_created": sum(1 for i in items if today(i.get("created_at"))),
        "tickets_closed": len(closed_today),
        "tickets_abandoned": sum(1 for i in closed_today if i.get("abandoned")),
        "waiting_now": {"total": len(waiting), "by_group": dict(sorted(by_group.items()))},
        "assigned_now": {"total": len(assigned), "by_agent": dict(sorted(by_agent.items()))},
        "oldest_waiting_since": format_ms(min(since)) if since else None,
        "wait_time": stats([i["wait_time_ms"] for i in items if today(i.get("first_assigned_at"))]),
        "first_response_time": stats(
            [i["first_response_time_ms"] for i in items if today(i.get("first_response_at"))]
        ),
    }
