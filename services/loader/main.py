"""The loader drains both SNS-fed queues: real-time (DynamoDB) and reports (PostgreSQL);
it also folds closed coarse rollup buckets (services/loader/folds.py), a bounded
round every few seconds that stops with the workers on SIGTERM."""

from __future__ import annotations

from functools import partial

from services.loader import folds, quarters, realtime, reports
from shared.aws import open_aws
from shared.db import make_engine
from shared.pipeline import REALTIME_QUEUE, REPORTS_QUEUE
from shared.service import queue_worker, run_workers
from shared.settings import Settings


async def run(settings: Settings) -> None:
    engine = make_engine(settings.require_database_url())
    try:
        await reports.register_zones(engine, settings.report_calendars())
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
            fold = partial(folds.fold_closed, engine, rp.calendars, settings.fold_grace_s)
            periodic = [(quarters.PUBLISH_EVERY_S, publish), (settings.fold_every_s, fold)]
            await run_workers(settings, aws, workers, periodic)
    finally:
        await engine.dispose()
