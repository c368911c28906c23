from __future__ import annotations

from functools import partial

from services.enricher.handler import EnricherDeps, handle
from shared.aws import open_aws
from shared.pipeline import ENRICHER_QUEUE
from shared.service import queue_worker, run_workers
from shared.settings import Settings


async def run(settings: Settings) -> None:
    async with open_aws(settings) as aws:
        topic = await aws.sns.create_topic(Name=settings.topic)  # idempotent: returns the ARN
        deps = EnricherDeps(
            s3=aws.s3, sns=aws.sns, bucket=settings.bucket, topic_arn=topic["TopicArn"]
        )
        worker = await queue_worker(aws.sqs, settings, ENRICHER_QUEUE, partial(handle, deps))
        await run_workers(settings, aws, [worker])
