from __future__ import annotations

from functools import partial

from botocore.exceptions import ClientError

from services.enricher.handler import EnricherDeps, handle
from shared.aws import open_aws
from shared.pipeline import ENRICHER_QUEUE
from shared.service import queue_worker, run_workers
from shared.settings import Settings


async def run(settings: Settings) -> None:
    async with open_aws(settings) as aws:
        try:  # a read, never a Create* call: provisioning made the topic
            await aws.sns.get_topic_attributes(TopicArn=settings.topic_arn)
        except ClientError as exc:
            raise RuntimeError(
                f"topic {settings.topic_arn} is not readable: provision first, or set"
                " TELEMETRY_TOPIC_ARN"
            ) from exc
        deps = EnricherDeps(
            s3=aws.s3, sns=aws.sns, bucket=settings.bucket, topic_arn=settings.topic_arn
        )
        worker = await queue_worker(aws.sqs, settings, ENRICHER_QUEUE, partial(handle, deps))
        await run_workers(settings, aws, [worker])
