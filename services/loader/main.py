"""The loader drains both SNS-fed queues: real-time (DynamoDB) and reports (PostgreSQL);
it also folds closed coarse rollup buckets (services/loader/folds.py), a bounded
round every few seconds that stops with the workers on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from services.loader import folds, quarters, realtime, reports
from shared.aws import open_aws
from shared.db import make_engine
from shared.errors import is_transient
from shared.pipeline import REALTIME_QUEUE, REPORTS_QUEUE
from shared.service import queue_worker, run_workers
from shared.settings import Settings
from shared.timebuckets import Calendar
from shared.worker import TRANSIENT_RETRY_MAX_S

log = logging.getLogger(__name__)


async def register_zones(engine: AsyncEngine, cals: tuple[Calendar, ...]) -> None:
    """PostgreSQL may be down or restarting when the loader starts: wait for it
    as a handler does (a passing failure retried, 1 s doubling to 30 s) rather
    than exit and be restarted in a loop."""
    pause = 1.0
    while True:
        try:
            await reports.register_zones(engine, cals)
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("report zones not registered (%r); retrying in %.0f s", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, TRANSIENT_RETRY_MAX_S)


async def run(settings: Settings) -> None:
    engine = make_engine(settings.require_database_url())
    try:
        await register_zones(engine, settings.report_calendars())
        async with open_aws(settings) as aws:
            rt = realtime.RealtimeLoaderDeps(
                s3=aws.s3,
                dynamodb=aws.dynamodb,
                bucket=settings.bucket,
                table=settings.realtime_table,
            )
            rp = reports.ReportLoaderDeps(
                s3=aws.s3,
                bucket=settings.bucket,
                engine=engine,
                dynamodb=aws.dynamodb,
                realtime_table=settings.realtime_table,
                calendars=settings.report_calendars(),
            )
            workers = [
                await queue_worker(aws.sqs, settings, REALTIME_QUEUE, partial(realtime.handle, rt)),
                await queue_worker(aws.sqs, settings, REPORTS_QUEUE, partial(reports.handle, rp)),
            ]
            publish = partial(quarters.publish, engine, aws.dynamodb, settings.realtime_table)
            fold = partial(
                folds.fold_closed, engine, rp.calendars, settings.fold_grace_s, failed=set()
            )
            periodic = [(quarters.PUBLISH_EVERY_S, publish), (settings.fold_every_s, fold)]
            await run_workers(settings, aws, workers, periodic)
    finally:
        await engine.dispose()
