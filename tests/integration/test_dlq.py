"""Dead letters (issue 12, "dead letters"): `telemetry dlq list|show|redrive|purge`
against a real SQS endpoint, with messages dead-lettered by the real worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid

import orjson
import pytest

from shared import queues
from shared.aws import Aws
from shared.settings import Settings
from shared.worker import Worker, WorkerOptions
from telemetry.commands import UsageError
from telemetry.dlq import list_command, purge_command, redrive_command, resolve, show_command


async def _depth(aws: Aws, name: str) -> int:
    url = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
    return (await queues.depth(aws.sqs, url)).total


async def _bodies(aws: Aws, name: str) -> list[str]:
    """The bodies of a queue's messages (a peek: they stay visible)."""
    url = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
    return sorted(m["Body"] for m in await queues.peek(aws.sqs, url))


async def test_dead_letters_are_listed_shown_redriven_and_purged(
    aws: Aws, provisioned: Settings
) -> None:
    # A pipeline of its own: the enricher's queue under another name, so that no
    # running service takes the redriven messages.
    name = f"dlq-check-{uuid.uuid4().hex[:6]}"
    settings = provisioned.model_copy(update={"enricher_queue": name})
    url = (await aws.sqs.create_queue(QueueName=name))["QueueUrl"]
    dlq_url = (await aws.sqs.create_queue(QueueName=name + "-dlq"))["QueueUrl"]
    failing = orjson.dumps({"keys": ["consolidated/acme/0001764000000000-x~a.lines.gz"]}).decode()
    await aws.sqs.send_message(QueueUrl=url, MessageBody="not json")
    await aws.sqs.send_message(QueueUrl=url, MessageBody=failing)
    done = asyncio.Event()

    async def handle(key: str) -> None:
        done.set()
        raise ValueError("year 0 is out of range")

    options = WorkerOptions(concurrency=2, wait_s=1, visibility_timeout_s=30, max_receives=1)
    worker = Worker(aws.sqs, url, dlq_url, handle, options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 20)
    for _ in range(50):
        if worker.outcomes["dead_lettered"] == 2:
            break
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert worker.outcomes == {"dead_lettered": 2}

    listed = await list_command(settings)
    [row] = [line for line in listed.splitlines() if line.startswith(name + " ")]
    assert row.split()[:3] == [name, name + "-dlq", "2"]

    shown = await show_command(settings, name)
    assert shown.splitlines()[0] == f"{name}-dlq -> {name}: 2 shown"
    assert "reason: poison: body is not JSON" in shown
    assert "reason: ValueError: year 0 is out of range" in shown
    assert "keys: consolidated/acme/0001764000000000-x~a.lines.gz" in shown
    assert await _depth(aws, name + "-dlq") == 2  # showing takes nothing away
    assert await _bodies(aws, name + "-dlq") == sorted(["not json", failing])

    said = await redrive_command(settings, name + "-dlq")  # by the DLQ's name, or the queue's
    assert said == f"moved 2 messages from {name}-dlq to {name}"
    assert await _depth(aws, name + "-dlq") == 0
    assert await _bodies(aws, name) == sorted(["not json", failing])  # as they were sent

    await aws.sqs.send_message(QueueUrl=dlq_url, MessageBody="{}")
    with pytest.raises(UsageError):
        await purge_command(settings, name, confirmed=False)
    assert await _depth(aws, name + "-dlq") == 1
    assert await purge_command(settings, name, confirmed=True) == f"purged {name}-dlq"
    assert await _depth(aws, name + "-dlq") == 0


async def test_a_redrive_leaves_what_fails_again_meanwhile(aws: Aws, provisioned: Settings) -> None:
    """A message dead-lettered after the redrive started is not moved again: a
    poison message cannot go round while the command runs."""
    name = f"dlq-loop-{uuid.uuid4().hex[:6]}"
    settings = provisioned.model_copy(update={"filter_queue": name})
    await aws.sqs.create_queue(QueueName=name)
    dlq_url = (await aws.sqs.create_queue(QueueName=name + "-dlq"))["QueueUrl"]
    await aws.sqs.send_message(QueueUrl=dlq_url, MessageBody="old")
    await asyncio.sleep(1.1)  # SentTimestamp has millisecond resolution; be clearly apart
    redrive = asyncio.create_task(redrive_command(settings, name))
    await asyncio.sleep(0)
    await aws.sqs.send_message(QueueUrl=dlq_url, MessageBody="new")
    said = await redrive
    assert said.startswith(f"moved 1 messages from {name}-dlq to {name}")
    assert await _bodies(aws, name) == ["old"]


def test_queues_are_named_as_the_pipeline_declares_them(provisioned: Settings) -> None:
    assert resolve(provisioned, "telemetry-load-reports-dlq").setting == "reports_queue"
    assert resolve(provisioned, "telemetry-filter").setting == "filter_queue"
    with pytest.raises(UsageError, match="telemetry-enricher"):
        resolve(provisioned, "https://sqs.example/123/telemetry-filter-dlq")


def test_the_command_line_names_the_pipeline_s_queues(stack_env: dict[str, str]) -> None:
    env = {**os.environ, **stack_env}
    cli = [sys.executable, "-m", "telemetry.cli"]
    listed = subprocess.run([*cli, "dlq", "list"], env=env, capture_output=True, text=True,
                            timeout=120, check=True)  # fmt: skip
    assert listed.stdout.split("\n")[0].split() == ["queue", "dead-letter", "queue", "messages",
                                                    "oldest"]  # fmt: skip
    assert "telemetry-load-reports-dlq" in listed.stdout
    wrong = subprocess.run([*cli, "dlq", "redrive", "nosuch"], env=env, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert wrong.returncode == 2 and "telemetry-enricher" in wrong.stderr
