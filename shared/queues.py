"""How full a queue is and how old its messages are, read from SQS itself.

SQS gives depths (`GetQueueAttributes`); the age of the oldest message is a
CloudWatch metric only (`ApproximateAgeOfOldestMessage`), so it is measured
from the `SentTimestamp` of messages: the ones a worker holds, or, for a
dead-letter queue, a peek. A peek receives with a visibility timeout of 0
(nothing is hidden), but it counts as a receive, so it is only ever done on
dead-letter queues, which have no redrive policy of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

DEPTHS = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
PEEK_MAX = 10  # one ReceiveMessage
STATS_EVERY_S = 10.0  # depths on /metrics are read from SQS at most this often per process


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


class QueueWatch(Collector):
    """A worker's queue on `/metrics`: its freshness (the oldest message the
    worker holds), its depths and its dead letters."""

    def __init__(self, sqs: SQSClient, queue_url: str, dlq_url: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.queue = queue_url.rsplit("/", 1)[-1]
        self.dlq = dlq_url.rsplit("/", 1)[-1]
        self.sent: dict[str, float] = {}  # messages the worker holds -> their SentTimestamp
        self._depth: Depth | None = None
        self._dlq_depth: Depth | None = None
        self._dlq_oldest_s: float | None = None
        self._stats_until = 0.0

    def oldest_in_flight_s(self) -> float:
        """Age of the oldest message this worker holds; 0 when it holds none."""
        return max(0.0, time.time() - min(self.sent.values())) if self.sent else 0.0

    async def refresh_stats(self) -> None:
        """Depths of the queue and its DLQ (and the age of the DLQ's oldest
        message, only when it has any): a few requests, at most every 10 s."""
        if time.monotonic() < self._stats_until:
            return
        self._stats_until = time.monotonic() + STATS_EVERY_S
        self._depth, dlq = await asyncio.gather(
            depth(self.sqs, self.queue_url), depth(self.sqs, self.dlq_url)
        )
        oldest = await oldest_age_s(self.sqs, self.dlq_url) if dlq.total else 0.0
        self._dlq_depth, self._dlq_oldest_s = dlq, oldest

    def collect(self) -> Iterator[Metric]:
        oldest = GaugeMetricFamily(
            "telemetry_queue_oldest_age_seconds",
            "Age (from SentTimestamp) of the oldest message this process is handling; "
            "0 when it handles none. The freshness of the stage: take the max over replicas.",
            labels=["queue"],
        )
        oldest.add_metric([self.queue], self.oldest_in_flight_s())
        yield oldest
        if self._depth is not None and self._dlq_depth is not None:
            depths = GaugeMetricFamily(
                "telemetry_queue_messages",
                "Messages of the queue by state (SQS's approximate counts).",
                labels=["queue", "state"],
            )
            for state in DEPTHS:
                depths.add_metric([self.queue, state], getattr(self._depth, state))
            yield depths
            dlq = GaugeMetricFamily(
                "telemetry_dlq_messages",
                "Messages parked in the queue's dead-letter queue (see docs/operations.md).",
                labels=["queue", "dlq"],
            )
            dlq.add_metric([self.queue, self.dlq], self._dlq_depth.total)
            yield dlq
            age = GaugeMetricFamily(
                "telemetry_dlq_oldest_age_seconds",
                "Age of the oldest message in the dead-letter queue (of a sample of up to 10).",
                labels=["queue", "dlq"],
            )
            age.add_metric([self.queue, self.dlq], self._dlq_oldest_s or 0.0)
            yield age
