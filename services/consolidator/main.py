from __future__ import annotations

from functools import partial

from services.consolidator.handler import ConsolidatorDeps, handle
from services.consolidator.store import TicketStore
from shared.aws import open_aws
from shared.service import queue_worker
from shared.settings import Settings
from shared.worker import stop_event_on_signals


async def run(settings: Settings) -> None:
    stop = stop_event_on_signals()
    async with open_aws(settings) as aws:
        store = TicketStore(s3=aws.s3, bucket=settings.bucket, compact_after=settings.compact_after)
        deps = ConsolidatorDeps(store=store, buckets=settings.ticket_buckets)
        worker = await queue_worker(
            aws.sqs, settings, settings.consolidator_queue, partial(handle, deps)
        )
        await worker.run(stop)
