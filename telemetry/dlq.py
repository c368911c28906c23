"""`telemetry dlq list|show|redrive|purge QUEUE`: dead letters, as an operator handles them.

Every work queue and its dead-letter queue (name + `-dlq`) are declared in
shared/pipeline.py; a queue is named here by either name, and a dead letter's
source is the queue the pipeline pairs with its DLQ, never an attribute of the
message. docs/operations.md says what to do with each kind.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import queues
from shared.aws import Aws, open_aws
from shared.errors import PoisonMessageError
from shared.pipeline import QUEUES, Queue
from shared.settings import Settings
from shared.worker import object_keys
from telemetry.commands import UsageError

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

SHOW_VISIBILITY_S = 30  # messages shown are hidden this long at most, then put back at once
REDRIVE_VISIBILITY_S = 60


def resolve(settings: Settings, name: str) -> Queue:
    """The pipeline's queue named `name`, or whose DLQ is named `name`."""
    for queue in QUEUES:
        if name in (queue.name(settings), queue.dlq_name(settings)):
            return queue
    known = ", ".join(q.name(settings) for q in QUEUES)
    raise UsageError(f"no queue {name!r} in the pipeline; its queues: {known} (each with -dlq)")


async def _url(sqs: SQSClient, name: str) -> str:
    return (await sqs.get_queue_url(QueueName=name))["QueueUrl"]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


async def list_command(settings: Settings) -> str:
    """Every dead-letter queue: its depth and the age of its oldest message."""
    rows = [("queue", "dead-letter queue", "messages", "oldest")]
    async with open_aws(settings) as aws:
        for queue in QUEUES:
            url = await _url(aws.sqs, queue.dlq_name(settings))
            depth = (await queues.depth(aws.sqs, url)).total
            oldest = await queues.oldest_age_s(aws.sqs, url) if depth else None
            rows.append((queue.name(settings), queue.dlq_name(settings), str(depth), _age(oldest)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)  # fmt: skip


def _describe(message: dict[str, Any], now: float) -> str:
    attrs = message.get("MessageAttributes", {})
    reason = attrs.get("reason", {}).get("StringValue", "(none: moved by the SQS redrive policy)")
    sent = queues.sent_s(message)
    when = datetime.fromtimestamp(sent, UTC).strftime("%Y-%m-%d %H:%M:%S") if sent else "?"
    try:
        what = "keys: " + (", ".join(object_keys(message["Body"])) or "(none)")
    except PoisonMessageError:
        what = "body: " + message["Body"][:300]
    age = _age(now - sent if sent else None)
    return f"{message['MessageId']}  since {when} UTC ({age})\n  reason: {reason}\n  {what}"


async def show_command(settings: Settings, name: str, limit: int = 10) -> str:
    """Up to `limit` dead letters with their reasons; they stay in the queue."""
    queue = resolve(settings, name)
    async with open_aws(settings) as aws:
        url = await _url(aws.sqs, queue.dlq_name(settings))
        seen: dict[str, dict[str, Any]] = {}
        try:
            while len(seen) < limit:
                resp = await aws.sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=min(10, limit - len(seen)),
                    VisibilityTimeout=SHOW_VISIBILITY_S,  # a message shows once per run
                    WaitTimeSeconds=1,
                    MessageSystemAttributeNames=["SentTimestamp"],
                    MessageAttributeNames=["All"],
                )
                batch = list(resp.get("Messages", []))
                if not batch:
                    break
                seen.update({str(m["MessageId"]): dict(m) for m in batch})
        finally:
            await _release(aws, url, list(seen.values()))
    now = time.time()
    head = f"{queue.dlq_name(settings)} -> {queue.name(settings)}: {len(seen)} shown"
    return "\n".join([head, *(_describe(m, now) for m in seen.values())])


async def _release(aws: Aws, url: str, messages: list[dict[str, Any]]) -> None:
    """Make messages received here visible again at once."""
    for start in range(0, len(messages), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(messages[start : start + 10])
        ]
        await aws.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]


async def redrive_command(settings: Settings, name: str) -> str:
    """Send every dead letter back to its source queue, then delete it from the DLQ.

    Only messages dead-lettered before the command started are moved: one that
    fails again while it runs comes back to the DLQ as a new message and is
    left there, so a poison message cannot loop. Send before delete: a crash in
    between leaves a duplicate, which every stage takes as a redelivery.
    """
    queue = resolve(settings, name)
    started = time.time()
    moved = 0
    async with open_aws(settings) as aws:
        dlq = await _url(aws.sqs, queue.dlq_name(settings))
        source = await _url(aws.sqs, queue.name(settings))
        while True:
            resp = await aws.sqs.receive_message(
                QueueUrl=dlq,
                MaxNumberOfMessages=10,
                VisibilityTimeout=REDRIVE_VISIBILITY_S,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["SentTimestamp"],
            )
            batch = [dict(m) for m in resp.get("Messages", [])]
            old = [m for m in batch if (queues.sent_s(m) or 0) < started]
            await _release(aws, dlq, [m for m in batch if m not in old])
            if not old:
                break
            sent = await aws.sqs.send_message_batch(
                QueueUrl=source,
                Entries=[{"Id": str(i), "MessageBody": str(m["Body"])} for i, m in enumerate(old)],
            )
            done = [old[int(s["Id"])] for s in sent.get("Successful", [])]
            if done:
                await aws.sqs.delete_message_batch(
                    QueueUrl=dlq,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": str(m["ReceiptHandle"])}
                        for i, m in enumerate(done)
                    ],
                )
            moved += len(done)
            if len(done) < len(old):
                failed = sent.get("Failed", [])
                raise UsageError(f"moved {moved}; SQS refused {len(failed)}: {failed[:1]}")
        left = (await queues.depth(aws.sqs, dlq)).total
    said = f"moved {moved} messages from {queue.dlq_name(settings)} to {queue.name(settings)}"
    return said + (f"; {left} left (dead-lettered again meanwhile?)" if left else "")


async def purge_command(settings: Settings, name: str, confirmed: bool) -> str:
    """Delete every dead letter of a queue (SQS allows one purge a minute)."""
    queue = resolve(settings, name)
    if not confirmed:
        raise UsageError(f"purge deletes every message of {queue.dlq_name(settings)}: add --yes")
    async with open_aws(settings) as aws:
        await aws.sqs.purge_queue(QueueUrl=await _url(aws.sqs, queue.dlq_name(settings)))
    return f"purged {queue.dlq_name(settings)}"
