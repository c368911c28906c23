"""Writing accepted events to Kinesis: batched, retried, all or 503."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient
    from types_aiobotocore_kinesis.type_defs import PutRecordsRequestEntryTypeDef

# One record carries many events (as the Kinesis Producer Library aggregates):
# fewer PUT units, fewer GetRecords, fewer objects downstream.
MAX_RECORD_BYTES = 900_000
MAX_RECORDS_PER_CALL = 500
PARTITIONS_PER_TENANT = 16
ATTEMPTS = 4


class StreamUnavailableError(Exception):
    """The stream refused or throttled part of a batch after every retry."""


def pack_records(tenant: str, lines: list[bytes]) -> list[PutRecordsRequestEntryTypeDef]:
    """NDJSON records of one tenant; the key spreads a tenant over shards."""
    records: list[PutRecordsRequestEntryTypeDef] = []
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > MAX_RECORD_BYTES:
            records.append(_record(tenant, chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        records.append(_record(tenant, chunk))
    return records


def _record(tenant: str, chunk: list[bytes]) -> PutRecordsRequestEntryTypeDef:
    return {
        "Data": b"\n".join(chunk) + b"\n",
        "PartitionKey": f"{tenant}/{secrets.randbelow(PARTITIONS_PER_TENANT)}",
    }


async def put_all(
    kinesis: KinesisClient, stream: str, records: list[PutRecordsRequestEntryTypeDef]
) -> None:
    """Return only when every record is in the stream; else StreamUnavailableError."""
    for start in range(0, len(records), MAX_RECORDS_PER_CALL):
        pending = records[start : start + MAX_RECORDS_PER_CALL]
        for attempt in range(ATTEMPTS):
            try:
                resp = await kinesis.put_records(StreamName=stream, Records=pending)
            except (ClientError, BotoCoreError) as exc:
                if attempt == ATTEMPTS - 1:
                    raise StreamUnavailableError(str(exc)) from exc
            else:
                results = resp["Records"]
                pending = [
                    r for r, res in zip(pending, results, strict=True) if res.get("ErrorCode")
                ]
                if not pending:
                    break
            await asyncio.sleep(0.05 * 2**attempt)
        else:
            raise StreamUnavailableError(f"{len(pending)} records still refused")
