"""Process plumbing every service shares: logging, queue lookup, serving."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import uvicorn

from shared.aws import Aws
from shared.layout import expect_key
from shared.pipeline import Queue
from shared.settings import Settings
from shared.worker import Handler, Worker, WorkerOptions, stop_event_on_signals

if TYPE_CHECKING:
    from fastapi import FastAPI
    from types_aiobotocore_sqs import SQSClient


def setup_logging(name: str) -> None:
    logging.basicConfig(
        level=os.environ.get("TELEMETRY_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )


def worker_options(settings: Settings) -> WorkerOptions:
    return WorkerOptions(
        concurrency=settings.worker_concurrency,
        wait_s=settings.worker_wait_s,
        visibility_timeout_s=settings.visibility_timeout_s,
        max_receives=settings.max_receives,
        drain_timeout_s=settings.drain_timeout_s,
        handler_timeout_s=settings.handler_timeout_s,
    )


def checked(queue: Queue, handler: Handler) -> Handler:
    """A key outside the queue's declared prefix is poison (BadKeyError), never
    handed to the handler: a misrouted notification goes to the DLQ at once."""

    async def handle(key: str) -> None:
        expect_key(key, queue.prefix)
        await handler(key)

    return handle


async def queue_worker(
    sqs: SQSClient, settings: Settings, queue: Queue, handler: Handler
) -> Worker:
    url = (await sqs.get_queue_url(QueueName=queue.name(settings)))["QueueUrl"]
    dlq = (await sqs.get_queue_url(QueueName=queue.dlq_name(settings)))["QueueUrl"]
    return Worker(sqs, url, dlq, checked(queue, handler), worker_options(settings))


async def queue_backlog(sqs: SQSClient, queue: str) -> int:
    """Messages waiting or in flight: zero means the stage has nothing left to do."""
    url = (await sqs.get_queue_url(QueueName=queue))["QueueUrl"]
    attrs = await sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(v) for v in attrs.get("Attributes", {}).values())


async def serve_metrics(render: Callable[[], str], host: str, port: int) -> asyncio.Server:
    """A minimal `/metrics` for the queue workers, which have no web framework."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = render().encode()
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)


async def serve_metrics_or_warn(
    render: Callable[[], str], settings: Settings
) -> asyncio.Server | None:
    """Metrics are never worth a dead worker: a port in use is only a warning."""
    try:
        return await serve_metrics(render, settings.host, settings.metrics_port)
    except OSError:
        logging.getLogger(__name__).warning(
            "cannot serve /metrics on port %d", settings.metrics_port, exc_info=True
        )
        return None


Job = Callable[[], Awaitable[object]]


async def every(interval_s: float, job: Job, stop: asyncio.Event, timeout_s: float) -> None:
    """Run `job` every `interval_s` until `stop`; a failure is logged, not fatal."""
    while not stop.is_set():
        try:
            async with asyncio.timeout(timeout_s):
                await job()
        except Exception:
            logging.getLogger(__name__).warning("periodic job failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def run_workers(
    settings: Settings,
    aws: Aws,
    workers: list[Worker],
    periodic: Sequence[tuple[float, Job]] = (),
) -> None:
    """Run queue workers (and `periodic` jobs: interval, job) until SIGTERM, with
    `/metrics` when a port is set."""
    stop = stop_event_on_signals()
    server = None
    if settings.metrics_port:

        def render() -> str:
            return aws.counter.prometheus() + "".join(w.prometheus() for w in workers)

        server = await serve_metrics_or_warn(render, settings)
    try:
        await asyncio.gather(
            *(w.run(stop) for w in workers),
            *(every(i, job, stop, settings.handler_timeout_s) for i, job in periodic),
        )
    finally:
        if server is not None:
            server.close()


async def serve_http(app: FastAPI, host: str, port: int) -> None:
    """uvicorn handles SIGTERM/SIGINT itself and drains open requests."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", access_log=False,
        timeout_graceful_shutdown=20,
    )  # fmt: skip
    await uvicorn.Server(config).serve()
