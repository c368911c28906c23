from __future__ import annotations

from functools import partial

from services.consolidator.handler import ConsolidatorDeps, handle
from services.consolidator.store import make_store
from shared.aws import open_aws
from shared.pipeline import CONSOLIDATOR_QUEUE
from shared.service import queue_worker, run_workers
from shared.settings import Settings


async def run(settings: Settings) -> None:
    async with open_aws(settings) as aws:
        store = make_store(aws.s3, settings)
        deps = ConsolidatorDeps(store=store, buckets=settings.ticket_buckets)
        worker = await queue_worker(aws.sqs, settings, CONSOLIDATOR_QUEUE, partial(handle, deps))
        await run_workers(settings, aws, [worker])
