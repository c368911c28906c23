"""Dumper: Kinesis → per-tenant gzip NDJSON objects under `raw/` (Firehose's role).

Records are buffered per tenant until a size or an age bound; a flush writes
every buffer, then moves each shard's checkpoint past what was written. A
crash re-reads at most one buffer's worth, and duplicates are harmless
downstream. Several dumpers may run: they only duplicate work.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from shared.events import TENANT_RE
from shared.layout import new_batch_id, raw_key

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_kinesis import KinesisClient
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger(__name__)
MIN_READ_INTERVAL_S = 0.2


@dataclass
class Cursor:
    shard_id: str
    iterator: str | None
    read_seq: str | None  # last record read (maybe only buffered)
    saved_seq: str | None  # last record whose object is durable
    next_read: float = 0.0  # Kinesis allows 5 GetRecords per shard per second
    ended: bool = False  # a closed shard read to its end


@dataclass
class Buffers:
    by_tenant: dict[str, list[bytes]] = field(default_factory=dict)
    size: int = 0
    oldest: float | None = None

    def add(self, tenant: str, data: bytes) -> None:
        if not data.endswith(b"\n"):
            data += b"\n"
        self.by_tenant.setdefault(tenant, []).append(data)
        self.size += len(data)
        if self.oldest is None:
            self.oldest = time.monotonic()


@dataclass
class DumperConfig:
    stream: str
    bucket: str
    checkpoints_table: str
    max_bytes: int
    max_age_s: float
    idle_poll_s: float


class Dumper:
    def __init__(
        self,
        kinesis: KinesisClient,
        s3: S3Client,
        dynamodb: DynamoDBClient,
        config: DumperConfig,
    ) -> None:
        self.kinesis = kinesis
        self.s3 = s3
        self.dynamodb = dynamodb
        self.config = config
        self.cursors: dict[str, Cursor] = {}
        self.buffers = Buffers()

    async def run(self, stop: asyncio.Event) -> None:
        last_refresh = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() - last_refresh > 30:
                    try:
                        await self._refresh_shards()
                        last_refresh = time.monotonic()
                    except (ClientError, BotoCoreError):
                        log.exception("cannot list shards; trying again")
                        await asyncio.sleep(1.0)
                        continue
                read = 0
                for cursor in list(self.cursors.values()):
                    read += await self._read(cursor)
                if self._due():
                    try:
                        await self.flush()
                    except Exception:
                        log.exception("flush failed; re-reading from the last checkpoint")
                        await asyncio.sleep(1.0)
                if read == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.config.idle_poll_s)
        finally:
            await self.flush()

    def _due(self) -> bool:
        b = self.buffers
        if b.size >= self.config.max_bytes:
            return True
        return b.oldest is not None and time.monotonic() - b.oldest >= self.config.max_age_s

    async def _refresh_shards(self) -> None:
        shards = []
        token: str | None = None
        while True:
            resp = await (
                self.kinesis.list_shards(NextToken=token)
                if token
                else self.kinesis.list_shards(StreamName=self.config.stream)
            )
            shards.extend(resp["Shards"])
            token = resp.get("NextToken")
            if not token:
                break
        for shard in shards:
            sid = shard["ShardId"]
            if sid not in self.cursors:
                saved = await self._load_checkpoint(sid)
                self.cursors[sid] = Cursor(sid, None, saved, saved)

    async def _iterator(self, cursor: Cursor) -> str | None:
        if cursor.read_seq:
            resp = await self.kinesis.get_shard_iterator(
                StreamName=self.config.stream,
                ShardId=cursor.shard_id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=cursor.read_seq,
            )
        else:
            resp = await self.kinesis.get_shard_iterator(
                StreamName=self.config.stream,
                ShardId=cursor.shard_id,
                ShardIteratorType="TRIM_HORIZON",
            )
        return resp.get("ShardIterator")

    async def _read(self, cursor: Cursor) -> int:
        if cursor.ended or time.monotonic() < cursor.next_read:
            return 0
        cursor.next_read = time.monotonic() + MIN_READ_INTERVAL_S
        try:
            if cursor.iterator is None:
                cursor.iterator = await self._iterator(cursor)
                if cursor.iterator is None:
                    return 0
            resp = await self.kinesis.get_records(ShardIterator=cursor.iterator, Limit=1000)
        except (ClientError, BotoCoreError) as exc:
            log.warning("shard %s: %s; reopening", cursor.shard_id, exc)
            cursor.iterator = None
            return 0
        for record in resp["Records"]:
            tenant = record["PartitionKey"].split("/", 1)[0]
            if TENANT_RE.fullmatch(tenant):
                self.buffers.add(tenant, bytes(record["Data"]))
            else:
                log.error("record %s has no tenant; skipped", record["SequenceNumber"])
            cursor.read_seq = record["SequenceNumber"]
        cursor.iterator = resp.get("NextShardIterator")
        cursor.ended = cursor.iterator is None  # resharded: its children take over
        return len(resp["Records"])

    async def flush(self) -> None:
        """Write every tenant's buffer, then checkpoint: never the other way round."""
        buffers, self.buffers = self.buffers, Buffers()
        writes = [
            self.s3.put_object(
                Bucket=self.config.bucket,
                Key=raw_key(tenant, new_batch_id()),
                Body=gzip.compress(b"".join(chunks), compresslevel=6),
                ContentType="application/x-ndjson",
                ContentEncoding="gzip",
            )
            for tenant, chunks in buffers.by_tenant.items()
        ]
        try:
            await asyncio.gather(*writes)
        except BaseException:
            # Nothing is checkpointed: re-read from the last saved position.
            for cursor in self.cursors.values():
                cursor.read_seq, cursor.iterator = cursor.saved_seq, None
            raise
        for cursor in self.cursors.values():
            if cursor.read_seq != cursor.saved_seq and cursor.read_seq is not None:
                await self._save_checkpoint(cursor.shard_id, cursor.read_seq)
                cursor.saved_seq = cursor.read_seq

    def _checkpoint_key(self, shard_id: str) -> dict[str, dict[str, str]]:
        return {"shard": {"S": f"{self.config.stream}/{shard_id}"}}

    async def _load_checkpoint(self, shard_id: str) -> str | None:
        resp = await self.dynamodb.get_item(
            TableName=self.config.checkpoints_table,
            Key=self._checkpoint_key(shard_id),
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return item["sequence"]["S"] if item else None

    async def _save_checkpoint(self, shard_id: str, seq: str) -> None:
        await self.dynamodb.put_item(
            TableName=self.config.checkpoints_table,
            Item={**self._checkpoint_key(shard_id), "sequence": {"S": seq}},
        )
