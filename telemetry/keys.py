"""`telemetry keys create|list|revoke`: API keys as an operator manages them.

The table holds each key by its hash (shared/auth.py); a key is shown once,
at its creation. `list` shows ids and public prefixes, never secrets;
`revoke ID` takes effect in every process within 5 s.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.auth import (
    MARKER,
    SCOPES,
    KeyRecord,
    hash_key,
    key_id_of,
    new_key,
    record_of,
)
from shared.aws import open_aws
from shared.events import TENANT_RE
from shared.settings import Settings
from telemetry.commands import UsageError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


DURATION_RE = re.compile(r"(\d+)([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    if not scopes or not scopes <= SCOPES:
        raise UsageError(f"scopes must be a comma-separated subset of {sorted(SCOPES)}")
    return scopes


def parse_expires(text: str, now: datetime) -> datetime:
    """`--expires`: a duration from now (`90m`, `12h`, `30d`, `2w`) or an ISO 8601
    instant (`2027-01-31`, `2027-01-31T18:00:00+01:00`; without an offset: UTC)."""
    found = DURATION_RE.fullmatch(text.strip())
    if found:
        return now + timedelta(seconds=int(found.group(1)) * UNITS[found.group(2)])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise UsageError("--expires takes a duration (30d, 12h, 90m) or a date") from exc
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        raise UsageError("--expires is in the past")
    return when


def item_of(key: str, tenant_id: str, scopes: frozenset[str], expires_at: datetime | None,
            now: datetime) -> dict[str, Any]:  # fmt: skip
    key_id = key_id_of(key)
    assert key_id is not None, "new keys have an id"
    item: dict[str, Any] = {
        "key_hash": {"S": hash_key(key)},
        "key_id": {"S": key_id},
        "tenant_id": {"S": tenant_id},
        "scopes": {"SS": sorted(scopes)},
        "created_at": {"S": now.isoformat()},
    }
    if expires_at is not None:
        item["expires_at"] = {"S": expires_at.astimezone(UTC).isoformat()}
    return item


async def store_key(
    dynamodb: DynamoDBClient,
    table: str,
    tenant_id: str,
    scopes: frozenset[str],
    expires_at: datetime | None = None,
) -> str:
    """A new key, stored by its hash; the key itself is returned once, never kept."""
    key = new_key()
    await dynamodb.put_item(
        TableName=table,
        Item=item_of(key, tenant_id, scopes, expires_at, datetime.now(UTC)),
        ConditionExpression="attribute_not_exists(key_hash)",
    )
    return key


async def scan_keys(dynamodb: DynamoDBClient, table: str) -> list[KeyRecord]:
    """Every key of the table (a scan: an operator's command, never a request's)."""
    records: list[KeyRecord] = []
    start: dict[str, Any] | None = None
    while True:
        page = await (
            dynamodb.scan(TableName=table, ExclusiveStartKey=start)
            if start
            else dynamodb.scan(TableName=table)
        )
        records.extend(record_of(i) for i in page.get("Items", []) if i["key_hash"]["S"] != MARKER)
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    return sorted(records, key=lambda r: (r.tenant_id, r.created_at or datetime.min, r.key_id))


async def mark_revoked(dynamodb: DynamoDBClient, table: str, key_hash: str) -> None:
    """Mark the key revoked, then move the marker: every process drops its cached
    keys within REVOCATION_CHECK_S and reads this one again, revoked."""
    await dynamodb.update_item(
        TableName=table,
        Key={"key_hash": {"S": key_hash}},
        UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :now)",
        ConditionExpression="attribute_exists(key_hash)",
        ExpressionAttributeValues={":now": {"S": datetime.now(UTC).isoformat()}},
    )
    await dynamodb.update_item(
        TableName=table,
        Key={"key_hash": {"S": MARKER}},
        UpdateExpression="ADD version :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )


async def create_key(
    settings: Settings, tenant: str, scopes: str, expires: str | None = None
) -> str:
    if not TENANT_RE.fullmatch(tenant):
        raise UsageError(f"tenant must match {TENANT_RE.pattern}")
    chosen = parse_scopes(scopes)
    expires_at = parse_expires(expires, datetime.now(UTC)) if expires else None
    async with open_aws(settings) as aws:
        return await store_key(aws.dynamodb, settings.keys_table, tenant, chosen, expires_at)


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t is not None else "-"


def format_keys(records: Sequence[KeyRecord], now: datetime) -> str:
    rows = [("id", "prefix", "tenant", "scopes", "status", "created", "expires", "last used")]
    rows += [
        (r.key_id, r.prefix, r.tenant_id, ",".join(sorted(r.scopes)), r.status(now),
         _when(r.created_at), _when(r.expires_at), _when(r.last_used_at))
        for r in records
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)  # fmt: skip


async def list_keys_command(settings: Settings, tenant: str | None, show_all: bool) -> str:
    """Active keys (with `show_all`, revoked and expired ones too); times in UTC."""
    now = datetime.now(UTC)
    async with open_aws(settings) as aws:
        records = await scan_keys(aws.dynamodb, settings.keys_table)
    chosen = [r for r in records if (tenant is None or r.tenant_id == tenant)
              and (show_all or r.status(now) == "active")]  # fmt: skip
    return format_keys(chosen, now)


async def revoke_key_command(settings: Settings, key_id: str) -> str:
    async with open_aws(settings) as aws:
        records = await scan_keys(aws.dynamodb, settings.keys_table)
        found = [r for r in records if r.key_id == key_id]
        if len(found) != 1:
            raise UsageError(f"{len(found)} keys have the id {key_id!r} (see keys list --all)")
        await mark_revoked(aws.dynamodb, settings.keys_table, found[0].key_hash)
    return f"revoked {key_id} ({found[0].tenant_id}); every service refuses it within 5 s"


@asynccontextmanager
async def temporary_keys(
    settings: Settings, tenants: Sequence[str], scopes: str, lifetime: timedelta
) -> AsyncIterator[dict[str, str]]:
    """A key per tenant that expires after `lifetime` and is revoked on exit:
    a tool's keys leave no trail of working keys behind, even if it is killed."""
    expires_at = datetime.now(UTC) + lifetime
    chosen = parse_scopes(scopes)
    async with open_aws(settings) as aws:
        table = settings.keys_table
        keys = {t: await store_key(aws.dynamodb, table, t, chosen, expires_at) for t in tenants}
        try:
            yield keys
        finally:
            for key in keys.values():
                await mark_revoked(aws.dynamodb, table, hash_key(key))
