"""Filter: validate a raw object again, quarantine what fails, group by ticket.

The output is one object of event lines sorted by ticket, named after the raw
object, so a redelivered message rewrites the same bytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from shared.events import MAX_FUTURE, InvalidEventError, canonical, validate
from shared.layout import (
    FILTERED,
    QUARANTINE,
    RAW,
    batch_time,
    decode_ndjson_lines,
    encode_lines,
    encode_ndjson,
    expect_key,
    stage_key,
    ticket_token,
)
from shared.objects import get_bytes, put_bytes

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


# The collector checked "in the future" against its own clock; the batch time is the
# dumper's. Allow their clocks to differ by an hour before refusing what got a 202.
CLOCK_SKEW = timedelta(hours=1)


@dataclass(frozen=True)
class FilterDeps:
    s3: S3Client
    bucket: str


def split_events(
    lines: list[bytes], tenant: str, now: datetime
) -> tuple[list[tuple[bytes, bytes]], list[dict[str, Any]]]:
    """Event lines sorted by ticket, and the refused lines with their reasons."""
    kept: set[tuple[bytes, bytes]] = set()
    refused: list[dict[str, Any]] = []
    for line in lines:
        try:
            event = validate(orjson.loads(line), now, MAX_FUTURE + CLOCK_SKEW)
            if event["tenant_id"] != tenant:
                raise InvalidEventError("tenant_mismatch", "event of another tenant")
            kept.add((ticket_token(event["ticket_id"]), canonical(event)))
        except orjson.JSONDecodeError as exc:
            refused.append(
                {"reason": f"invalid_json: {exc}", "line": line.decode(errors="replace")}
            )
        except InvalidEventError as exc:
            refused.append({"reason": f"{exc.code}: {exc.message}", "line": line.decode()})
    return sorted(kept), refused


async def handle(deps: FilterDeps, key: str) -> None:
    tenant, batch = expect_key(key, RAW)
    data = await get_bytes(deps.s3, deps.bucket, key)
    try:
        lines = decode_ndjson_lines(data)
    except (OSError, EOFError, zlib.error) as exc:
        await put_bytes(
            deps.s3,
            deps.bucket,
            stage_key(QUARANTINE, tenant, batch),
            encode_ndjson([{"reason": f"unreadable object {key}: {exc}", "line": None}]),
        )
        return
    # The batch's own time, not this clock: a redelivery must write the same lines.
    kept, refused = split_events(lines, tenant, batch_time(batch))
    if refused:
        await put_bytes(
            deps.s3, deps.bucket, stage_key(QUARANTINE, tenant, batch), encode_ndjson(refused)
        )
    if kept:
        await put_bytes(
            deps.s3, deps.bucket, stage_key(FILTERED, tenant, batch), encode_lines(kept)
        )
