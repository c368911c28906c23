"""How full a queue is and how old its messages are, read from SQS itself.

SQS gives depths (`GetQueueAttributes`); the age of the oldest message is a
CloudWatch metric only (`ApproximateAgeOfOldestMessage`), so it is measured
from the `SentTimestamp` of messages: the ones a worker holds, or, for a
dead-letter queue, a peek. A peek receives with a visibility timeout of 0
(nothing is hidden), but it counts as a receive, so it is only ever done on
dead-letter queues, which have no redrive policy of their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

DEPTHS = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
PEEK_MAX = 10  # one ReceiveMessage


@dataclass(frozen=True)
class Depth:
    visible: int = 0
    in_flight: int = 0
    delayed: int = 0

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


async def depth(sqs: SQSClient, url: str) -> Depth:
    resp = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[*DEPTHS.values()])  # type: ignore[list-item]
    values: dict[str, str] = {str(k): v for k, v in resp.get("Attributes", {}).items()}
    return Depth(**{name: int(values.get(attr, "0")) for name, attr in DEPTHS.items()})


def sent_s(message: dict[str, Any]) -> float | None:
    """A received message's SentTimestamp, in epoch seconds."""
    stamp = message.get("Attributes", {}).get("SentTimestamp")
    return int(stamp) / 1000 if stamp else None


async def peek(sqs: SQSClient, url: str, wait_s: int = 1) -> list[dict[str, Any]]:
    """Up to 10 messages, left visible: a sample (SQS promises no order)."""
    resp = await sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=PEEK_MAX,
        VisibilityTimeout=0,
        WaitTimeSeconds=wait_s,
        MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
        MessageAttributeNames=["All"],
    )
    return list(resp.get("Messages", []))  # type: ignore[arg-type]


async def oldest_age_s(sqs: SQSClient, url: str) -> float | None:
    """Age of the oldest of a peek's messages (a dead-letter queue only); None when empty."""
    stamps = [s for s in (sent_s(m) for m in await peek(sqs, url)) if s is not None]
    return max(0.0, time.time() - min(stamps)) if stamps else None
