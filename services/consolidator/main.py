from __future__ import annotations

from functools import partial

from services.consolidator.handler import ConsolidatorDeps, handle
from services.consolidator.store import ObjectCache, TicketStore
from shared.aws import open_aws
from shared.service import queue_worker, run_workers
from shared.settings import Settings


async def run(settings: Settings) -> None:
    async with open_aws(settings) as aws:
        store = TicketStore(
            s3=aws.s3,
            bucket=settings.bucket,
            compact_after=settings.compact_after,
            cache=ObjectCache(settings.store_cache_lines),
        )
        deps = ConsolidatorDeps(store=store, buckets=settings.ticket_buckets)
        worker = await queue_worker(
            aws.sqs, settings, settings.consolidator_queue, partial(handle, deps)
        )
        await run_workers(settings, aws, [worker])
