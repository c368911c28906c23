"""`telemetry provision`: every AWS resource and the database schema, idempotently.

Safe to rerun at every start, which the in-memory emulator needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from botocore.exceptions import ClientError
from sqlalchemy.engine import Connection

import migrations
from shared.aws import Aws
from shared.db import make_engine
from shared.pipeline import QUEUES, Feed, Queue, Resource
from shared.realtime import OPEN_FIELDS, OPEN_INDEX, OPEN_KEY
from shared.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeDefinitionTypeDef,
        GlobalSecondaryIndexTypeDef,
        KeySchemaElementTypeDef,
    )

DLQ_RETENTION_S = 14 * 86_400
# The tables with a single string key (the real-time table is made below).
HASH_KEYS = {
    Resource.KEYS_TABLE: "key_hash",
    Resource.CHECKPOINTS_TABLE: "shard",
    Resource.STORE_TABLE: "key",  # ticket store: tenants' states and compaction leases
}
REALTIME_TTL = "expires_at"


class ProvisionError(RuntimeError):
    """A resource cannot be made as configured; the message says what to change."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


async def ensure_bucket(aws: Aws, settings: Settings) -> None:
    kwargs: dict[str, Any] = {"Bucket": settings.bucket}
    if settings.aws_region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.aws_region}
    try:
        await aws.s3.create_bucket(**kwargs)
    except ClientError as exc:
        if _code(exc) == "BucketAlreadyExists":  # S3 names are global: not ours
            raise ProvisionError(
                f"bucket {settings.bucket} belongs to another AWS account: set TELEMETRY_BUCKET"
                " to a name of your own, or leave it unset for telemetry-<account>-<region>"
            ) from exc
        if _code(exc) != "BucketAlreadyOwnedByYou":
            raise


async def queue_arn(aws: Aws, url: str) -> str:
    attrs = await aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attrs["Attributes"]["QueueArn"]


async def ensure_queue(aws: Aws, settings: Settings, queue: Queue) -> tuple[str, str]:
    """A work queue with its dead-letter queue; returns (url, arn)."""
    name = queue.name(settings)
    dlq_url = (await aws.sqs.create_queue(QueueName=queue.dlq_name(settings)))["QueueUrl"]
    await aws.sqs.set_queue_attributes(
        QueueUrl=dlq_url, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)}
    )
    url = (await aws.sqs.create_queue(QueueName=name))["QueueUrl"]
    arn = await queue_arn(aws, url)
    # The worker dead-letters with a reason after max_receives; the redrive
    # policy is the backstop for a worker that dies mid-message every time.
    redrive = {
        "deadLetterTargetArn": await queue_arn(aws, dlq_url),
        "maxReceiveCount": settings.max_receives + 2,
    }
    await aws.sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={
            "VisibilityTimeout": str(settings.visibility_timeout_s),
            "RedrivePolicy": json.dumps(redrive),
        },
    )
    return url, arn


async def allow_sender(aws: Aws, queue: str, queue_arn: str, service: str, source_arn: str) -> None:
    """Only our bucket (or topic), of our account, may send to the queue."""
    account = queue_arn.split(":")[4]  # the queue's account is the bucket's and the topic's
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": source_arn},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }
    url = (await aws.sqs.get_queue_url(QueueName=queue))["QueueUrl"]
    await aws.sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})


async def ensure_topic(aws: Aws, settings: Settings, queue_arns: list[str]) -> str:
    topic_arn = (await aws.sns.create_topic(Name=settings.topic))["TopicArn"]
    subs = await aws.sns.list_subscriptions_by_topic(TopicArn=topic_arn)
    existing = {s["Endpoint"] for s in subs.get("Subscriptions", [])}
    for arn in queue_arns:
        if arn not in existing:
            await aws.sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=arn,
                Attributes={"RawMessageDelivery": "true"},
            )
    return topic_arn


async def ensure_notifications(aws: Aws, settings: Settings, arns: dict[Queue, str]) -> None:
    """Each bucket-fed queue gets the ObjectCreated events of its prefix."""
    await aws.s3.put_bucket_notification_configuration(
        Bucket=settings.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": f"{q.prefix}-to-{q.name(settings)}",
                    "QueueArn": arns[q],
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {"FilterRules": [{"Name": "prefix", "Value": q.prefix + "/"}]}
                    },
                }
                for q in QUEUES
                if q.feed is Feed.BUCKET
            ]
        },
    )


async def ensure_table(
    aws: Aws,
    name: str,
    keys: list[KeySchemaElementTypeDef],
    attributes: list[AttributeDefinitionTypeDef],
    ttl_attribute: str | None = None,
    indexes: list[GlobalSecondaryIndexTypeDef] | None = None,
) -> None:
    extra: dict[str, Any] = {"GlobalSecondaryIndexes": indexes} if indexes else {}
    try:
        await aws.dynamodb.create_table(
            TableName=name,
            KeySchema=keys,
            AttributeDefinitions=attributes,
            BillingMode="PAY_PER_REQUEST",
            **extra,
        )
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise
    for _ in range(120):
        desc = await aws.dynamodb.describe_table(TableName=name)
        if desc["Table"]["TableStatus"] == "ACTIVE":
            break
        await asyncio.sleep(1)
    if ttl_attribute:
        try:
            await aws.dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
            )
        except ClientError as exc:
            if _code(exc) != "ValidationException":  # already enabled
                raise


INDEX_WAIT_S = 600
OPEN_INDEX_SPEC: GlobalSecondaryIndexTypeDef = {
    "IndexName": OPEN_INDEX,
    "KeySchema": [
        {"AttributeName": OPEN_KEY, "KeyType": "HASH"},
        {"AttributeName": "ticket_id", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(OPEN_FIELDS)},
}


async def ensure_realtime_table(aws: Aws, table: str) -> None:
    """Tickets and quarter items, and the sparse index of open tickets
    (shared/realtime.py). A table made before the index gets it, and its open
    tickets are put in it once (a marker item records that this was done)."""
    key_attributes: list[AttributeDefinitionTypeDef] = [
        {"AttributeName": "tenant_id", "AttributeType": "S"},
        {"AttributeName": "ticket_id", "AttributeType": "S"},
        {"AttributeName": OPEN_KEY, "AttributeType": "S"},
    ]
    await ensure_table(
        aws,
        table,
        [
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": "ticket_id", "KeyType": "RANGE"},
        ],
        key_attributes,
        ttl_attribute=REALTIME_TTL,
        indexes=[OPEN_INDEX_SPEC],
    )
    desc = await aws.dynamodb.describe_table(TableName=table)
    if not any(
        i["IndexName"] == OPEN_INDEX for i in desc["Table"].get("GlobalSecondaryIndexes", [])
    ):
        await aws.dynamodb.update_table(
            TableName=table,
            AttributeDefinitions=key_attributes[1:],
            GlobalSecondaryIndexUpdates=[{"Create": OPEN_INDEX_SPEC}],
        )
    for _ in range(INDEX_WAIT_S):
        desc = await aws.dynamodb.describe_table(TableName=table)
        indexes = desc["Table"].get("GlobalSecondaryIndexes", [])
        if all(i.get("IndexStatus", "ACTIVE") == "ACTIVE" for i in indexes):
            break
        await asyncio.sleep(1)
    else:
        raise RuntimeError(
            f"index {OPEN_INDEX} of {table} is still being built: provision again when it is"
            " ACTIVE (its open tickets are indexed then), before starting the report service"
        )
    marker = {"tenant_id": {"S": "#provision"}, "ticket_id": {"S": OPEN_INDEX}}  # no tenant id
    if "Item" not in await aws.dynamodb.get_item(TableName=table, Key=marker, ConsistentRead=True):
        await index_open_tickets(aws, table)
        await aws.dynamodb.put_item(TableName=table, Item=marker)


OPEN_WITHOUT_KEY = "#s IN (:waiting, :assigned) AND attribute_not_exists(#o)"


async def index_open_tickets(aws: Aws, table: str) -> None:
    """Put the open tickets of items written before the index in it. Each update
    is conditioned on the item as it is then (still open, still unindexed), so a
    ticket a loader changed meanwhile is right either way. Real-time loaders of
    the version before the index must be stopped first: their puts drop the key."""
    names = {"#s": "status", "#o": OPEN_KEY}
    values = {":waiting": {"S": "waiting"}, ":assigned": {"S": "assigned"}}
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": OPEN_WITHOUT_KEY,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    while True:
        page = await aws.dynamodb.scan(**kwargs)
        for item in page.get("Items", []):
            with contextlib.suppress(aws.dynamodb.exceptions.ConditionalCheckFailedException):
                await aws.dynamodb.update_item(
                    TableName=table,
                    Key={"tenant_id": item["tenant_id"], "ticket_id": item["ticket_id"]},
                    UpdateExpression="SET #o = :tenant",
                    ConditionExpression=OPEN_WITHOUT_KEY,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={**values, ":tenant": item["tenant_id"]},
                )
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def ensure_stream(aws: Aws, settings: Settings) -> None:
    try:
        await aws.kinesis.create_stream(
            StreamName=settings.stream, ShardCount=settings.stream_shards
        )
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise
    for _ in range(120):
        desc = await aws.kinesis.describe_stream_summary(StreamName=settings.stream)
        if desc["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        await asyncio.sleep(1)
    raise RuntimeError(f"stream {settings.stream} did not become active")


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
    finally:
        await engine.dispose()


async def provision(aws: Aws, settings: Settings, *, database: bool = True) -> None:
    """Everything, then the schema; `database=False` skips the schema knowingly."""
    if database and not settings.database_url:
        raise ProvisionError(
            "TELEMETRY_DATABASE_URL is not set, so the schema cannot be migrated:"
            " set it, or pass --skip-database to provision the AWS resources alone"
        )
    await ensure_bucket(aws, settings)
    arns: dict[Queue, str] = {}
    for queue in QUEUES:
        _, arns[queue] = await ensure_queue(aws, settings, queue)
    topic_arn = await ensure_topic(aws, settings, [arns[q] for q in QUEUES if q.feed is Feed.TOPIC])
    bucket_arn = f"arn:aws:s3:::{settings.bucket}"
    for queue in QUEUES:
        name = queue.name(settings)
        if queue.feed is Feed.TOPIC:
            await allow_sender(aws, name, arns[queue], "sns.amazonaws.com", topic_arn)
        else:
            await allow_sender(aws, name, arns[queue], "s3.amazonaws.com", bucket_arn)
    await ensure_notifications(aws, settings, arns)
    for resource, hash_key in HASH_KEYS.items():
        await ensure_table(
            aws,
            getattr(settings, resource.value),
            [{"AttributeName": hash_key, "KeyType": "HASH"}],
            [{"AttributeName": hash_key, "AttributeType": "S"}],
        )
    await ensure_realtime_table(aws, settings.realtime_table)
    await ensure_stream(aws, settings)
    if database:
        await migrate(settings.require_database_url())
