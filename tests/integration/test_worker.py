"""The shared worker against a real SQS endpoint: a passing failure is retried in
place without spending a receive; the work's own failure is retried later and
dead-lettered with its reason after the last receive."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from shared.aws import Aws
from shared.worker import Worker, WorkerOptions


async def _queues(aws: Aws) -> tuple[str, str]:
    name = f"worker-{uuid.uuid4().hex[:8]}"
    dlq = (await aws.sqs.create_queue(QueueName=name + "-dlq"))["QueueUrl"]
    url = (await aws.sqs.create_queue(QueueName=name))["QueueUrl"]
    return url, dlq


async def _run_until(worker: Worker, done: asyncio.Event, timeout_s: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout_s)
    stop.set()
    await asyncio.wait_for(task, 10)


async def _count(aws: Aws, url: str) -> int:
    attrs = await aws.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(v) for v in attrs["Attributes"].values())


async def test_a_passing_failure_is_retried_in_place(aws: Aws) -> None:
    url, dlq = await _queues(aws)
    await aws.sqs.send_message(QueueUrl=url, MessageBody='{"keys": ["a", "b"]}')
    calls: list[str] = []
    done = asyncio.Event()

    async def handler(key: str) -> None:
        calls.append(key)
        if len(calls) <= 2:
            raise ConnectionResetError("database restarting")
        if key == "b":
            done.set()

    options = WorkerOptions(concurrency=1, wait_s=1, visibility_timeout_s=30, max_receives=1)
    worker = Worker(aws.sqs, url, dlq, handler, options)
    await _run_until(worker, done, 20)
    assert calls == ["a", "a", "a", "b"]
    assert worker.outcomes == {"done": 1}  # one receive, although max_receives is 1
    assert await _count(aws, url) == 0 and await _count(aws, dlq) == 0


async def test_the_work_s_own_failure_goes_to_the_dlq_with_its_reason(aws: Aws) -> None:
    url, dlq = await _queues(aws)
    await aws.sqs.send_message(QueueUrl=url, MessageBody='{"keys": ["a"]}')
    done = asyncio.Event()

    async def handler(key: str) -> None:
        done.set()
        raise ValueError("year 0 is out of range")

    options = WorkerOptions(concurrency=1, wait_s=1, visibility_timeout_s=30, max_receives=1)
    worker = Worker(aws.sqs, url, dlq, handler, options)
    await _run_until(worker, done, 20)
    assert worker.outcomes == {"dead_lettered": 1}
    parked = await aws.sqs.receive_message(
        QueueUrl=dlq, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )
    [message] = parked["Messages"]
    assert message["MessageAttributes"]["reason"]["StringValue"] == (
        "ValueError: year 0 is out of range"
    )
