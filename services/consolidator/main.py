from __future__ import annotations

from functools import partial

from services.consolidator.handler import ConsolidatorDeps, handle
from services.consolidator.store import make_store
from shared.aws import open_aws
from shared.pipeline import CONSOLIDATOR_QUEUE
from shared.service import queue_worker, run_workers
from shared.settings import Settings

COMPACT_EVERY_S = 1.0


async def run(settings: Settings) -> None:
    async with open_aws(settings) as aws:
        store = make_store(aws, settings)
        worker = await queue_worker(
            aws.sqs, settings, CONSOLIDATOR_QUEUE, partial(handle, ConsolidatorDeps(store))
        )

        async def compact() -> None:  # starts background work and returns at once
            store.compactor.tick()

        try:
            await run_workers(settings, aws, [worker], periodic=[(COMPACT_EVERY_S, compact)])
        finally:
            await store.compactor.close()
