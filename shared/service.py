"""Process plumbing every service shares: logging, queue lookup, serving."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import uvicorn

from shared.settings import Settings
from shared.worker import Handler, Worker, WorkerOptions

if TYPE_CHECKING:
    from fastapi import FastAPI
    from types_aiobotocore_sqs import SQSClient

DLQ_SUFFIX = "-dlq"


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
    )


async def queue_worker(sqs: SQSClient, settings: Settings, queue: str, handler: Handler) -> Worker:
    url = (await sqs.get_queue_url(QueueName=queue))["QueueUrl"]
    dlq = (await sqs.get_queue_url(QueueName=queue + DLQ_SUFFIX))["QueueUrl"]
    return Worker(sqs, url, dlq, handler, worker_options(settings))


async def queue_backlog(sqs: SQSClient, queue: str) -> int:
    """Messages waiting or in flight: zero means the stage has nothing left to do."""
    url = (await sqs.get_queue_url(QueueName=queue))["QueueUrl"]
    attrs = await sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(v) for v in attrs.get("Attributes", {}).values())


async def serve_http(app: FastAPI, host: str, port: int) -> None:
    """uvicorn handles SIGTERM/SIGINT itself and drains open requests."""
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False)
    await uvicorn.Server(config).serve()
