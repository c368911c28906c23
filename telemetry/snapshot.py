"""The local emulator's data kept across restarts.

moto holds everything in memory, while PostgreSQL keeps its data on disk: a
restart would leave the database describing events the emulator forgot. So
the emulator's state is written to a folder when the stack stops, and put
back when it starts, through the AWS APIs alone (any emulator would do):

- every object of the bucket (the ticket store, parked tickets, batches in
  flight), exported incrementally: objects never change once written;
- the API keys, the real-time view and the ticket store's states (DynamoDB);
- every message still in a queue or dead-letter queue;
- the stream's records the dumper has not checkpointed (the stream is new
  after a restart, so they are put again, and no checkpoint is restored).

Objects are put back before the bucket's notifications exist, so a restart
does not process them again. A snapshot that may miss something (messages
still in flight when it was taken) is marked unclean: put back, it shows a
generation mismatch (telemetry/rebuild.py) and the derived data is rebuilt.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.collector.stream import put_all
from shared.objects import get_bytes, put_bytes
from shared.pipeline import QUEUES
from telemetry.rebuild import GENERATION_KEY

if TYPE_CHECKING:
    from shared.aws import Aws
    from shared.settings import Settings

MANIFEST = "manifest.json"
CONCURRENCY = 16


def _tables(settings: Settings) -> list[str]:
    # The store's table holds each tenant's state: without it the objects of
    # the store would not be found again.
    return [settings.keys_table, settings.realtime_table, settings.store_table]


def _queues(settings: Settings) -> list[str]:
    return [name for q in QUEUES for name in (q.name(settings), q.dlq_name(settings))]


def _file_of(key: str) -> str:
    return urllib.parse.quote(key, safe="")


def _encode(value: Any) -> Any:
    """DynamoDB JSON with binary values as base64 (JSON has no bytes)."""
    if isinstance(value, bytes | bytearray):
        return {"__b64__": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _write_lines(path: Path, items: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(_encode(i)) + "\n" for i in items))


def _read_lines(path: Path) -> Iterator[Any]:
    if path.is_file():
        for line in path.read_text().splitlines():
            if line:
                yield _decode(json.loads(line))


@dataclass(frozen=True)
class Manifest:
    export: str  # folder of this export's tables, queues and stream records
    clean: bool
    exported_at: str
    objects: dict[str, str]  # key -> ETag

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        path = folder / MANIFEST
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    def write(self, folder: Path) -> None:
        tmp = folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        tmp.replace(folder / MANIFEST)  # the snapshot changes in one step


async def _in_flight(aws: Aws, settings: Settings) -> int:
    total = 0
    for name in _queues(settings):
        url = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
        attrs = await aws.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
        total += int(attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"])
    return total


async def _export_objects(
    aws: Aws, settings: Settings, folder: Path, before: dict[str, str]
) -> dict[str, str]:
    objects: dict[str, str] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": settings.bucket}
        if token:
            kwargs["ContinuationToken"] = token
        page = await aws.s3.list_objects_v2(**kwargs)
        objects.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    (folder / "s3").mkdir(parents=True, exist_ok=True)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def save(key: str) -> None:
        path = folder / "s3" / _file_of(key)
        if before.get(key) == objects[key] and path.is_file():
            return  # objects never change: already kept
        async with slots:
            path.write_bytes(await get_bytes(aws.s3, settings.bucket, key))

    await asyncio.gather(*(save(k) for k in objects))
    return objects


async def _scan(aws: Aws, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    now = int(datetime.now(UTC).timestamp())
    while True:
        page = await aws.dynamodb.scan(**kwargs)
        for item in page.get("Items", []):
            expires = item.get("expires_at", {}).get("N")
            if expires is None or int(expires) > now:  # what AWS's TTL would have deleted
                items.append(dict(item))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def _drain_queue(aws: Aws, name: str) -> list[dict[str, Any]]:
    """Every visible message, hidden for long enough not to be read twice."""
    url = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
    messages: list[dict[str, Any]] = []
    while True:
        resp = await aws.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=900,
            MessageAttributeNames=["All"], WaitTimeSeconds=0,
        )  # fmt: skip
        batch = resp.get("Messages", [])
        if not batch:
            return messages
        messages += [{"body": m["Body"], "attributes": m.get("MessageAttributes", {})}
                     for m in batch]  # fmt: skip


async def _unread_records(aws: Aws, settings: Settings) -> list[dict[str, Any]]:
    """Records after each shard's checkpoint: accepted, not yet in the bucket."""
    records: list[dict[str, Any]] = []
    shards = (await aws.kinesis.list_shards(StreamName=settings.stream))["Shards"]
    for shard in shards:
        sid = shard["ShardId"]
        saved = await aws.dynamodb.get_item(
            TableName=settings.checkpoints_table,
            Key={"shard": {"S": f"{settings.stream}/{sid}"}}, ConsistentRead=True,
        )  # fmt: skip
        start: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
        if "Item" in saved:
            start = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                     "StartingSequenceNumber": saved["Item"]["sequence"]["S"]}  # fmt: skip
        iterator = (
            await aws.kinesis.get_shard_iterator(StreamName=settings.stream, ShardId=sid, **start)
        ).get("ShardIterator")
        while iterator:
            resp = await aws.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += [{"key": r["PartitionKey"], "data": bytes(r["Data"])}
                        for r in resp["Records"]]  # fmt: skip
            if not resp["Records"]:
                break
            iterator = resp.get("NextShardIterator")
    return records


async def export_state(
    aws: Aws, settings: Settings, folder: Path, in_flight_wait_s: float
) -> Manifest:
    """Write the emulator's state to `folder` once the services have stopped.

    Messages a stopped worker left invisible come back within the visibility
    timeout; if some are still hidden after `in_flight_wait_s` the snapshot is
    unclean (they are redone by the rebuild its next start performs).
    """
    before = Manifest.read(folder)
    hidden = await _in_flight(aws, settings)
    for _ in range(int(in_flight_wait_s)):
        if not hidden:
            break
        await asyncio.sleep(1)
        hidden = await _in_flight(aws, settings)
    export = uuid.uuid4().hex[:12]
    target = folder / "exports" / export
    objects = await _export_objects(aws, settings, folder, before.objects if before else {})
    for table in _tables(settings):
        _write_lines(target / "dynamodb" / f"{table}.jsonl", await _scan(aws, table))
    for name in _queues(settings):
        _write_lines(target / "sqs" / f"{name}.jsonl", await _drain_queue(aws, name))
    _write_lines(target / "kinesis.jsonl", await _unread_records(aws, settings))
    manifest = Manifest(export, hidden == 0, datetime.now(UTC).isoformat(), objects)
    manifest.write(folder)
    for old in (folder / "exports").iterdir():
        if old.name != export:
            shutil.rmtree(old)
    for path in (folder / "s3").iterdir():
        if urllib.parse.unquote(path.name) not in objects:
            path.unlink()
    return manifest


async def import_objects(aws: Aws, settings: Settings, folder: Path) -> Manifest | None:
    """Put the snapshot's objects back; before the bucket notifies any queue."""
    manifest = Manifest.read(folder)
    if manifest is None:
        return None
    slots = asyncio.Semaphore(CONCURRENCY)

    async def put(key: str) -> None:
        async with slots:
            await put_bytes(
                aws.s3, settings.bucket, key, (folder / "s3" / _file_of(key)).read_bytes()
            )

    await asyncio.gather(*(put(k) for k in manifest.objects))
    if not manifest.clean:  # show the rebuild a mismatch: something may be missing
        await aws.s3.put_object(Bucket=settings.bucket, Key=GENERATION_KEY, Body=b"unclean")
    return manifest


async def import_rest(aws: Aws, settings: Settings, folder: Path, manifest: Manifest) -> None:
    """Tables, queues and unread stream records, once every resource exists."""
    target = folder / "exports" / manifest.export
    for table in _tables(settings):
        items = list(_read_lines(target / "dynamodb" / f"{table}.jsonl"))
        for start in range(0, len(items), 25):
            pending: Any = {table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
            while pending:
                resp = await aws.dynamodb.batch_write_item(RequestItems=pending)
                pending = resp.get("UnprocessedItems") or None
    for name in _queues(settings):
        url = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
        messages = list(_read_lines(target / "sqs" / f"{name}.jsonl"))
        for start in range(0, len(messages), 10):
            entries: Any = [
                {"Id": str(i), "MessageBody": m["body"], "MessageAttributes": m["attributes"]}
                for i, m in enumerate(messages[start : start + 10])
            ]
            await aws.sqs.send_message_batch(QueueUrl=url, Entries=entries)
    records: Any = [
        {"PartitionKey": r["key"], "Data": r["data"]} for r in _read_lines(target / "kinesis.jsonl")
    ]
    await put_all(aws.kinesis, settings.stream, records)
