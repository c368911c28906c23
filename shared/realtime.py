"""The real-time store's layout, shared by the loaders that write it and `/realtime`.

One DynamoDB table (hash `tenant_id`, range `ticket_id`) holds two families,
each in partitions of its own tenant (tenant ids cannot hold `#`):
- `(tenant, ticket id)`: a ticket's latest state, written only when its version
  grows. While the ticket waits or is held it carries `open_tenant`, the hash
  key of the sparse index `open`: "now" reads the open tickets only.
- `(tenant#quarters, quarter start)`: a snapshot of the tenant's 15-minute
  `all` rollup row (tickets created, closed and abandoned in it; histograms
  of the wait and first-response times that ended in it), with the row's
  version: a snapshot replaces only an older one. Every zone's day is a union
  of quarters, so "today" in any zone reads at most 100 small items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

OPEN_INDEX = "open"
OPEN_KEY = "open_tenant"
OPEN_STATUSES = frozenset({"waiting", "assigned"})
OPEN_FIELDS = ("status", "group_id", "agent_id", "queue_since")
# The rollup kinds of the view: counts, and durations with their histograms.
COUNTED = ("created", "closed", "abandoned")
TIMED = ("assigned", "first_response")  # wait time, first-response time
SHOWN = frozenset((*COUNTED, *TIMED))
# A quarter is read only while it is in some zone's today: within ~2 days.
RECENT_S = 2 * 86_400
QUARTER_RETENTION_S = 3 * 86_400


def quarters_partition(tenant: str) -> str:
    return f"{tenant}#quarters"


def quarter_key(quarter_s: int) -> str:
    """Fixed width, so the range key's string order is time order."""
    return f"{quarter_s:012d}"


async def put_if_newer(dynamodb: DynamoDBClient, table: str, item: dict[str, Any]) -> bool:
    """Put `item` unless the stored one has the same or a higher version."""
    try:
        await dynamodb.put_item(
            TableName=table,
            Item=item,
            ConditionExpression="attribute_not_exists(version) OR version < :v",
            ExpressionAttributeValues={":v": item["version"]},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True
