from __future__ import annotations

from functools import partial

from services.filter.handler import FilterDeps, handle
from shared.aws import open_aws
from shared.pipeline import FILTER_QUEUE
from shared.service import queue_worker, run_workers
from shared.settings import Settings


async def run(settings: Settings) -> None:
    async with open_aws(settings) as aws:
        deps = FilterDeps(s3=aws.s3, bucket=settings.bucket)
        worker = await queue_worker(aws.sqs, settings, FILTER_QUEUE, partial(handle, deps))
        await run_workers(settings, aws, [worker])
