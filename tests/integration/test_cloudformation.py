"""deploy/aws/telemetry.yaml created through CloudFormation in moto, and the
pipeline test run on what it made, each service with the environment of its
ECS task definition as the stack wrote it.

moto skips two things AWS does (shared/notes/deploy-tools.md): it does not
create `AWS::SNS::Subscription`, and it does not apply the bucket's
`NotificationConfiguration`. Both are applied here from the template's own
values, through the API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from shared.pipeline import STAGES, Kind
from shared.settings import Settings
from telemetry.keys import create_key
from telemetry.up import free_port, start_moto
from tests.integration.conftest import ServiceProcesses, settings_of
from tests.integration.test_pipeline import ticket_metrics_end_to_end

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "aws" / "telemetry.yaml"
STACK = "telemetry"
FAST = {  # as the session's stack_env: tests want results in seconds
    "TELEMETRY_BUFFER_MAX_AGE_S": "1",
    "TELEMETRY_DUMPER_IDLE_POLL_S": "0.2",
    "TELEMETRY_WORKER_WAIT_S": "1",
    "TELEMETRY_DRAIN_TIMEOUT_S": "5",
    "TELEMETRY_HOST": "127.0.0.1",
}


def clients(url: str) -> dict[str, Any]:
    kw = {"endpoint_url": url, "region_name": "us-east-1"}
    kw |= {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    names = ("cloudformation", "ec2", "acm", "ecs", "s3", "sns", "sqs")
    return {name: boto3.client(name, **kw) for name in names}  # type: ignore[call-overload]


def create_stack(aws: dict[str, Any]) -> dict[str, str]:
    """The template as an operator would deploy it; returns logical id -> physical id."""
    vpc = aws["ec2"].create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        aws["ec2"].create_subnet(
            VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{zone}"
        )["Subnet"]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    cert = aws["acm"].request_certificate(DomainName="telemetry.example.com")["CertificateArn"]
    params = {
        "ImageUri": "telemetry:test",
        "VpcId": vpc,
        "PrivateSubnetIds": ",".join(subnets),
        "PublicSubnetIds": ",".join(subnets),
        "CertificateArn": cert,
        # An existing database (the test's PostgreSQL); RDS is not emulated.
        "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:telemetry-db",
    }
    aws["cloudformation"].create_stack(
        StackName=STACK,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    deadline = time.monotonic() + 120
    while (status := stack_status(aws))[0].endswith("IN_PROGRESS"):
        assert time.monotonic() < deadline, "stack still in progress"
        time.sleep(0.5)
    assert status[0] == "CREATE_COMPLETE", status
    resources = aws["cloudformation"].describe_stack_resources(StackName=STACK)["StackResources"]
    # moto lists the resources it skipped without ids.
    return {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in resources
        if "PhysicalResourceId" in r
    }


def stack_status(aws: dict[str, Any]) -> tuple[str, str]:
    stack = aws["cloudformation"].describe_stacks(StackName=STACK)["Stacks"][0]
    return stack["StackStatus"], stack.get("StackStatusReason", "")


def apply_moto_gaps(aws: dict[str, Any], resources: dict[str, str]) -> None:
    """The subscriptions and bucket notifications, from the template's values."""
    template = yaml.safe_load(TEMPLATE.read_text())["Resources"]

    def queue_arn(logical: str) -> str:
        attrs = aws["sqs"].get_queue_attributes(
            QueueUrl=resources[logical], AttributeNames=["QueueArn"]
        )
        return str(attrs["Attributes"]["QueueArn"])

    for body in template.values():
        if body["Type"] == "AWS::SNS::Subscription":
            props = body["Properties"]
            aws["sns"].subscribe(
                TopicArn=resources[props["TopicArn"]["Ref"]],
                Protocol=props["Protocol"],
                Endpoint=queue_arn(props["Endpoint"]["Fn::GetAtt"][0]),
                Attributes={"RawMessageDelivery": str(props["RawMessageDelivery"]).lower()},
            )
    notifications = template["Bucket"]["Properties"]["NotificationConfiguration"]
    aws["s3"].put_bucket_notification_configuration(
        Bucket=resources["Bucket"],
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn(n["Queue"]["Fn::GetAtt"][0]),
                    "Events": [n["Event"]],
                    "Filter": {"Key": {"FilterRules": n["Filter"]["S3Key"]["Rules"]}},
                }
                for n in notifications["QueueConfigurations"]
            ]
        },
    )


def task_env(aws: dict[str, Any], family: str) -> dict[str, str]:
    """What ECS would give the container of this task definition."""
    task = aws["ecs"].describe_task_definition(taskDefinition=f"{STACK}-{family}")
    container = task["taskDefinition"]["containerDefinitions"][0]
    # moto leaves a list item that is AWS::NoValue as null; CloudFormation drops it.
    return {e["name"]: e["value"] for e in container.get("environment", []) if e is not None}


@pytest.fixture(scope="module")
def cfn_stack(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcesses, dict[str, Any], dict[str, str]]]:
    port = free_port()
    moto = start_moto(port)
    url = f"http://127.0.0.1:{port}"
    try:
        aws = clients(url)
        resources = create_stack(aws)
        apply_moto_gaps(aws, resources)
        base = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            # The secret's value in a real deployment (DatabaseSecretArn).
            "TELEMETRY_DATABASE_URL": database_url,
            "TELEMETRY_COLLECTOR_PORT": str(free_port()),
            "TELEMETRY_REPORT_PORT": str(free_port()),
        }
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TELEMETRY_"))}
        migrate = subprocess.run(
            [sys.executable, "-m", "telemetry.cli", "migrate"],
            env={**clean, **task_env(aws, "migrate"), **base},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert migrate.returncode == 0 and migrate.stdout.strip() == "migrated", migrate.stderr
        group = ServiceProcesses(base, tmp_path_factory.mktemp("cfn-logs"))
        group.env = {**clean, **base}
        for stage in STAGES:
            env = {**task_env(aws, stage.name), **FAST}
            if stage.kind is not Kind.HTTP:
                env["TELEMETRY_METRICS_PORT"] = str(free_port())
            group.start(stage.name, **env)
        try:
            group.wait_ready()
            yield group, aws, resources
        finally:
            print(f"exit codes: {group.stop()}; logs in {group.logs}")
    finally:
        moto.terminate()
        moto.wait(timeout=10)


async def test_the_pipeline_runs_on_the_stack_cloudformation_made(
    cfn_stack: tuple[ServiceProcesses, dict[str, Any], dict[str, str]],
) -> None:
    group, aws, _ = cfn_stack
    env = {**task_env(aws, "collector"), **group.env}
    settings: Settings = settings_of({k: v for k, v in env.items() if k in PASS})
    key = await create_key(settings, "cfn-acme", "ingest,read")
    async with httpx.AsyncClient(timeout=30) as http:
        await ticket_metrics_end_to_end(group.urls, "cfn-acme", key, http)


PASS = {
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "TELEMETRY_KEYS_TABLE",
}


def test_every_stage_is_an_ecs_service_of_its_declared_size(
    cfn_stack: tuple[ServiceProcesses, dict[str, Any], dict[str, str]],
) -> None:
    _, aws, _ = cfn_stack
    found = aws["ecs"].describe_services(cluster=STACK, services=[s.name for s in STAGES])
    desired = {s["serviceName"]: s["desiredCount"] for s in found["services"]}
    assert desired == {s.name: s.scaling.min for s in STAGES}
