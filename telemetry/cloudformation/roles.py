"""The task role of each stage: exactly its declared actions, on its resources."""

from __future__ import annotations

from typing import Any

from shared.pipeline import DLQ_ACTIONS, QUEUE_ACTIONS, Grant, Resource, Stage
from telemetry.cloudformation.base import BUCKET_ARN, TABLE_IDS, Json, att, queue_id, ref, sub


def resource_arns(grant: Grant) -> list[Any]:
    if grant.resource is Resource.BUCKET:
        if grant.actions == ("s3:ListBucket",):
            return [sub(BUCKET_ARN)]
        return [sub(f"{BUCKET_ARN}/{p}/*") for p in grant.prefixes]
    if grant.resource is Resource.STREAM:
        return [att("Stream", "Arn")]
    if grant.resource is Resource.TOPIC:
        return [ref("Topic")]
    table_arn = att(TABLE_IDS[grant.resource], "Arn")
    return [table_arn, {"Fn::Join": ["", [table_arn, "/index/*"]]}]


def statement(grant: Grant) -> Json:
    out: Json = {
        "Effect": "Allow",
        "Action": sorted(grant.actions),
        "Resource": resource_arns(grant),
    }
    if grant.actions == ("s3:ListBucket",):
        out["Condition"] = {"StringLike": {"s3:prefix": [f"{p}/*" for p in grant.prefixes]}}
    return out


def task_policy(stage: Stage) -> list[Json]:
    statements = [statement(g) for g in stage.grants]
    if stage.queues:
        statements.append(
            {
                "Effect": "Allow",
                "Action": sorted(QUEUE_ACTIONS),
                "Resource": [att(queue_id(q), "Arn") for q in stage.queues],
            }
        )
        statements.append(
            {
                "Effect": "Allow",
                "Action": sorted(DLQ_ACTIONS),
                "Resource": [att(queue_id(q) + "Dlq", "Arn") for q in stage.queues],
            }
        )
    # Every data resource but the queues is encrypted with DataKey.
    statements.append(
        {
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": att("DataKey", "Arn"),
        }
    )
    return statements
