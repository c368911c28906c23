"""The collector's group commit, against a real Kinesis endpoint (moto over HTTP)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest

from services.collector.stream import StreamBusyError, StreamUnavailableError, StreamWriter
from shared.aws import Aws, open_aws
from shared.settings import Settings


async def _stream(aws: Aws) -> str:
    name = f"writer-{uuid.uuid4().hex[:8]}"
    await aws.kinesis.create_stream(StreamName=name, ShardCount=1)
    waiter = aws.kinesis.get_waiter("stream_exists")
    await waiter.wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    return name


async def _records(aws: Aws, stream: str) -> list[tuple[str, bytes]]:
    shard = (await aws.kinesis.list_shards(StreamName=stream))["Shards"][0]["ShardId"]
    iterator = (
        await aws.kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )
    )["ShardIterator"]
    resp = await aws.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
    return [(r["PartitionKey"], r["Data"]) for r in resp["Records"]]


def _puts(aws: Aws) -> int:
    return aws.counter.counts[("kinesis", "PutRecords")]


async def test_concurrent_requests_share_calls_and_records(aws: Aws) -> None:
    stream = await _stream(aws)
    writer = StreamWriter(aws.kinesis, stream, linger_s=0.05)
    writer.start()
    before = _puts(aws)
    sent = {f"t{i % 3}": [f'{{"n":{n},"t":"t{i % 3}"}}'.encode() for n in range(i, 300, 60)]
            for i in range(3)}  # fmt: skip
    requests = [(t, [line]) for t, lines in sent.items() for line in lines]
    await asyncio.gather(*(writer.write(t, lines) for t, lines in requests))
    await writer.close(5)
    calls = _puts(aws) - before
    records = await _records(aws, stream)
    assert 1 <= calls <= 3, calls  # 15 requests inside one linger
    assert len(records) == 3  # one record per tenant
    for key, data in records:
        tenant = key.split("/")[0]
        assert sorted(data.splitlines()) == sorted(sent[tenant])


async def test_every_waiter_hears_a_failed_call(aws: Aws) -> None:
    writer = StreamWriter(aws.kinesis, f"missing-{uuid.uuid4().hex[:8]}", linger_s=0.01)
    writer.start()
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(writer.write("t", [b"{}"]) for _ in range(5)), return_exceptions=True),
        timeout=60,
    )
    assert all(isinstance(o, StreamUnavailableError) for o in outcomes), outcomes
    await writer.close(5)


async def test_close_writes_what_is_pending_and_refuses_the_rest(aws: Aws) -> None:
    stream = await _stream(aws)
    writer = StreamWriter(aws.kinesis, stream, linger_s=10)  # only close() can flush early
    writer.start()
    pending = asyncio.create_task(writer.write("t", [b'{"a":1}']))
    await asyncio.sleep(0.1)
    await writer.close(5)
    await asyncio.wait_for(pending, 1)
    assert [data for _, data in await _records(aws, stream)] == [b'{"a":1}\n']
    with pytest.raises(StreamUnavailableError):
        await writer.write("t", [b'{"a":2}'])


async def test_a_frozen_stream_bounds_what_waits_and_frees_its_slots(
    aws: Aws, provisioned: Settings
) -> None:
    """Past the pending-bytes bound a write is refused at once (the collector
    answers 503 instead of queueing without bound); a call to a stream that
    never answers fails after the call timeout, and its waiters hear it."""
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(64)
        endpoint = f"http://127.0.0.1:{frozen.getsockname()[1]}"
        async with open_aws(provisioned.model_copy(update={"aws_endpoint_url": endpoint}),
                            interactive=True) as stalled:  # fmt: skip
            writer = StreamWriter(stalled.kinesis, "s", linger_s=0.01,
                                  max_pending_bytes=1000, call_timeout_s=1.5)  # fmt: skip
            writer.start()
            first = asyncio.create_task(writer.write("t", [b"x" * 600]))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(StreamBusyError):
                await writer.write("t", [b"y" * 600])
            assert time.monotonic() - started < 0.1
            with pytest.raises(StreamUnavailableError):
                await asyncio.wait_for(first, 5)
            assert writer.pending_bytes == 0  # nothing left counted once answered
            await writer.close(5)
