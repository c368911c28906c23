"""The one SQS worker loop every stage runs.

Handlers are plain `async def handle(key: str) -> None` functions over S3
object keys; only this module knows about polling, receipts, visibility,
redelivery, the dead-letter queue and signals. A message is deleted only after
its handler returned, i.e. after its output is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from shared.errors import PoisonMessageError, is_transient

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)

Handler = Callable[[str], Awaitable[None]]
# A passing failure (a dependency down or slow) is retried in place, the message
# kept invisible, at most this far apart: an outage costs no receive, and its end
# is noticed within this many seconds.
TRANSIENT_RETRY_MAX_S = 30.0
# Backoff between receives of a message whose handler failed on its own: short
# enough that a failure misread as the work's own costs minutes, not hours.
RETRY_MAX_S = 120


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 4
    wait_s: int = 10
    visibility_timeout_s: int = 60
    max_receives: int = 10
    drain_timeout_s: float = 30.0
    handler_timeout_s: float = 300.0


def object_keys(body: str) -> list[str]:
    """S3 keys named by a message: an S3 notification or `{"keys": [...]}`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessageError(f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise PoisonMessageError("body is not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    if "keys" in doc and isinstance(doc["keys"], list):
        return [str(k) for k in doc["keys"]]
    if "Records" in doc and isinstance(doc["Records"], list):
        keys = []
        for record in doc["Records"]:
            try:
                raw = record["s3"]["object"]["key"]
            except (KeyError, TypeError) as exc:
                raise PoisonMessageError("S3 record without s3.object.key") from exc
            keys.append(urllib.parse.unquote_plus(raw))
        return keys
    raise PoisonMessageError("neither an S3 notification nor a key list")


def stop_event_on_signals() -> asyncio.Event:
    """SIGTERM and SIGINT ask every loop of the process to drain and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


class Worker:
    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        dlq_url: str,
        handler: Handler,
        options: WorkerOptions,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.handler = handler
        self.options = options
        self.tasks: set[asyncio.Task[None]] = set()
        self.outcomes: Counter[str] = Counter()
        self._stopping = asyncio.Event()

    def prometheus(self) -> str:
        queue = self.queue_url.rsplit("/", 1)[-1]
        return "".join(
            f'telemetry_messages_total{{queue="{queue}",outcome="{outcome}"}} {n}\n'
            for outcome, n in sorted(self.outcomes.items())
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set, then drain in-flight messages (bounded)."""
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: self._stopping.set())
        receive_failures = 0
        try:
            while not stop.is_set():
                if len(self.tasks) >= self.options.concurrency:
                    await asyncio.wait({*self.tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    continue
                free = self.options.concurrency - len(self.tasks)
                receive = asyncio.ensure_future(self._receive(min(10, free)))
                await asyncio.wait({receive, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    receive.cancel()  # unseen messages come back after the timeout
                    break
                try:
                    messages = receive.result()
                    receive_failures = 0
                except Exception:
                    receive_failures += 1
                    log.exception("receive failed on %s", self.queue_url)
                    pause = min(2.0**receive_failures, TRANSIENT_RETRY_MAX_S)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(stopping), pause)
                    continue
                for message in messages:
                    task = asyncio.create_task(self._process(message))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        finally:
            stopping.cancel()
            await self._drain()

    async def _drain(self) -> None:
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=self.options.drain_timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _receive(self, n: int) -> list[dict[str, Any]]:
        resp = await self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=n,
            WaitTimeSeconds=self.options.wait_s,
            VisibilityTimeout=self.options.visibility_timeout_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return list(resp.get("Messages", []))  # type: ignore[arg-type]

    async def _process(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        heartbeat = asyncio.create_task(self._heartbeat(receipt))
        try:
            outcome = await self._handle(message, count)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Deleting or dead-lettering failed: the message simply comes back.
            log.exception("could not settle a message on %s", self.queue_url)
            outcome = "unsettled"
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        self.outcomes[outcome] += 1

    async def _run_handler(self, body: str) -> None:
        """The handler on every key of the message; a passing failure is retried
        here (bounded by the handler timeout, or until the worker stops)."""
        keys = object_keys(body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.handler_timeout_s
        pause = 1.0
        async with asyncio.timeout_at(deadline):
            for key in keys:
                while True:
                    try:
                        await self.handler(key)
                        break
                    except Exception as exc:
                        if not is_transient(exc) or self._stopping.is_set():
                            raise
                        if loop.time() + pause >= deadline:
                            raise
                        log.warning("%s on %s; retrying in %.0f s", exc, key, pause)
                        await asyncio.sleep(pause)
                        pause = min(pause * 2, TRANSIENT_RETRY_MAX_S)

    async def _handle(self, message: dict[str, Any], count: int) -> str:
        receipt = message["ReceiptHandle"]
        try:
            await self._run_handler(message["Body"])
        except PoisonMessageError as exc:
            await self._dead_letter(message, f"poison: {exc}")
            return "dead_lettered"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("handler failed (receive %d) on %s", count, self.queue_url)
            if count >= self.options.max_receives:
                await self._dead_letter(message, f"{type(exc).__name__}: {exc}")
                return "dead_lettered"
            await self._retry_later(receipt, count)
            return "retried"
        await self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
        return "done"

    async def _heartbeat(self, receipt: str) -> None:
        """Keep a long-running message invisible while its handler works."""
        period = max(1.0, self.options.visibility_timeout_s / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=receipt,
                    VisibilityTimeout=self.options.visibility_timeout_s,
                )
            except Exception:
                log.warning("visibility extension failed", exc_info=True)

    async def _retry_later(self, receipt: str, count: int) -> None:
        """Back off 5 s, 10 s, 20 s … up to 2 min between receives. A passing failure
        was already retried in place for up to the handler timeout per receive, so
        ten receives outlast an outage of about an hour before the DLQ."""
        delay = min(5 * 2 ** (count - 1), RETRY_MAX_S)
        with contextlib.suppress(Exception):
            await self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=delay
            )

    async def _dead_letter(self, message: dict[str, Any], reason: str) -> None:
        """Park the message with its reason, then remove it from the work queue."""
        await self.sqs.send_message(
            QueueUrl=self.dlq_url,
            MessageBody=message["Body"],
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": reason[:1000]},
                "source_queue": {"DataType": "String", "StringValue": self.queue_url},
            },
        )
        await self.sqs.delete_message(
            QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
        )
