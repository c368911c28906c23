"""Small builders of CloudFormation values, shared by the template's parts."""

from __future__ import annotations

from typing import Any

from shared.pipeline import Queue, Resource
from shared.settings import Settings

Json = dict[str, Any]

DEFAULTS = Settings()

IMAGE_USER = "65534"  # nobody, as in the Dockerfile


def ref(name: str) -> Json:
    return {"Ref": name}


def att(name: str, attribute: str) -> Json:
    return {"Fn::GetAtt": [name, attribute]}


def sub(text: str) -> Json:
    return {"Fn::Sub": text}


def when(condition: str, yes: Any, no: Any = None) -> Json:
    return {"Fn::If": [condition, yes, no if no is not None else ref("AWS::NoValue")]}


def skip(*checks: tuple[str, str]) -> Json:
    """Checkov skips with their reasons, on the resource they concern."""
    return {"checkov": {"skip": [{"id": i, "comment": why} for i, why in checks]}}


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def queue_id(q: Queue) -> str:
    return camel(q.setting)  # FilterQueue, RealtimeQueue, ...


TABLE_IDS = {
    Resource.KEYS_TABLE: "KeysTable",
    Resource.CHECKPOINTS_TABLE: "CheckpointsTable",
    Resource.REALTIME_TABLE: "RealtimeTable",
    Resource.STORE_TABLE: "StoreTable",
}

BUCKET_NAME = "${Name}-${AWS::AccountId}-${AWS::Region}"  # global names: the account keeps it ours

BUCKET_ARN = "arn:${AWS::Partition}:s3:::" + BUCKET_NAME


def assume(service: str) -> Json:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }
