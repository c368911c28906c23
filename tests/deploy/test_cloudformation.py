"""deploy/aws/telemetry.yaml against the declared pipeline (cfn-lint and checkov
run in deploy/check.sh; tests/integration/test_cloudformation.py creates it)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from shared.layout import CONSOLIDATED, ENRICHED, FILTERED, RAW, STORE
from shared.pipeline import QUEUES, STAGES, STOP_GRACE_S, Feed, Kind
from shared.settings import Settings
from telemetry.cloudformation import render
from telemetry.cloudformation.base import camel, queue_id
from tests.deploy.conftest import ROOT, setting_env_names

PATH = ROOT / "deploy" / "aws" / "telemetry.yaml"


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(PATH.read_text())
    return dict(doc["Resources"])


def test_the_committed_template_is_generated_from_the_pipeline() -> None:
    assert PATH.read_text() == render(), "run `make deploy-files`"


def container(resources: dict[str, Any], stage: str) -> dict[str, Any]:
    task = resources[f"{camel(stage)}Task"]["Properties"]
    return dict(task["ContainerDefinitions"][0])


def test_every_stage_is_a_service_that_outlives_its_drain(resources: dict[str, Any]) -> None:
    drain = Settings().drain_timeout_s
    for stage in STAGES:
        c = container(resources, stage.name)
        assert c["Command"] == [stage.name]
        assert drain + 5 < c["StopTimeout"] == STOP_GRACE_S <= 120
        assert c["ReadonlyRootFilesystem"] and c["LinuxParameters"]["Capabilities"]["Drop"] == [
            "ALL"
        ]
        names = {e["Name"] for e in c["Environment"] if isinstance(e, dict) and "Name" in e}
        assert names <= setting_env_names(), stage.name
        service = resources[f"{camel(stage.name)}Service"]["Properties"]
        assert service["DesiredCount"] == stage.scaling.min


def test_the_dumper_is_exactly_one_even_during_a_deployment(resources: dict[str, Any]) -> None:
    for stage in STAGES:
        if stage.kind is Kind.STREAM:
            s = camel(stage.name)
            deployment = resources[f"{s}Service"]["Properties"]["DeploymentConfiguration"]
            assert (deployment["MaximumPercent"], deployment["MinimumHealthyPercent"]) == (100, 0)
            assert f"{s}Scaling" not in resources


def test_queue_workers_scale_on_their_queues_and_http_on_cpu(resources: dict[str, Any]) -> None:
    for stage in STAGES:
        s = camel(stage.name)
        if stage.kind is Kind.STREAM:
            continue
        target = resources[f"{s}Scaling"]["Properties"]
        assert (target["MinCapacity"], target["MaxCapacity"]) == (
            stage.scaling.min,
            stage.scaling.max,
        )
        tracking = resources[f"{s}ScalingPolicy"]["Properties"][
            "TargetTrackingScalingPolicyConfiguration"
        ]
        if stage.kind is Kind.QUEUE:
            metrics = tracking["CustomizedMetricSpecification"]["Metrics"]
            queues = [
                m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
                for m in metrics
                if m.get("MetricStat", {}).get("Metric", {}).get("Namespace") == "AWS/SQS"
            ]
            assert queues == [queue_id(q) for q in stage.queues]
            assert tracking["TargetValue"] == stage.scaling.backlog_per_replica
        else:
            assert tracking["TargetValue"] == stage.scaling.cpu_percent


def policy_actions(resources: dict[str, Any], stage: str) -> set[str]:
    role = resources[f"{camel(stage)}Role"]["Properties"]
    return {
        action
        for policy in role["Policies"]
        for st in policy["PolicyDocument"]["Statement"]
        for action in st["Action"]
    }


def test_each_task_role_holds_exactly_the_declared_actions(resources: dict[str, Any]) -> None:
    for stage in STAGES:
        kms = {"kms:Decrypt", "kms:GenerateDataKey"}
        assert policy_actions(resources, stage.name) == stage.actions() | kms, stage.name


def test_s3_grants_are_narrowed_to_their_prefixes(resources: dict[str, Any]) -> None:
    role = resources["ConsolidatorRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    puts = next(st for st in role["Statement"] if st["Action"] == ["s3:PutObject"])
    assert [r["Fn::Sub"].rsplit("/", 2)[1] for r in puts["Resource"]] == [STORE, CONSOLIDATED]


def test_queues_take_messages_only_from_their_source(resources: dict[str, Any]) -> None:
    notified = {
        n["Queue"]["Fn::GetAtt"][0]: n["Filter"]["S3Key"]["Rules"][0]["Value"]
        for n in resources["Bucket"]["Properties"]["NotificationConfiguration"][
            "QueueConfigurations"
        ]
    }
    subscribed = {
        body["Properties"]["Endpoint"]["Fn::GetAtt"][0]
        for body in resources.values()
        if body["Type"] == "AWS::SNS::Subscription" and body["Properties"]["RawMessageDelivery"]
    }
    for q in QUEUES:
        qid = queue_id(q)
        if q.feed is Feed.BUCKET:
            assert notified[qid] == f"{q.prefix}/"
        else:
            assert qid in subscribed
        condition = resources[qid + "Policy"]["Properties"]["PolicyDocument"]["Statement"][0][
            "Condition"
        ]
        assert "aws:SourceArn" in condition["ArnEquals"]
        assert "aws:SourceAccount" in condition["StringEquals"]
        redrive = resources[qid]["Properties"]["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [qid + "Dlq", "Arn"]}


def test_data_is_encrypted_recoverable_and_expires_where_it_may(resources: dict[str, Any]) -> None:
    tables = [r for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table"]
    assert len(tables) == 4  # keys, checkpoints, real-time, ticket store
    for t in tables:
        assert t["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
        assert t["Properties"]["SSESpecification"]["SSEEnabled"]
    bucket = resources["Bucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    expiring = {r.get("Prefix") for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert {f"{p}/" for p in (RAW, FILTERED, CONSOLIDATED, ENRICHED)} <= expiring
    assert f"{STORE}/" not in expiring, "the event store must never expire"


def test_http_services_are_health_checked_on_readyz(resources: dict[str, Any]) -> None:
    for stage in STAGES:
        if stage.kind is Kind.HTTP:
            target = resources[f"{camel(stage.name)}Target"]["Properties"]
            assert target["HealthCheckPath"] == "/readyz"
            assert target["Port"] == getattr(Settings(), str(stage.port_setting))
    listener = resources["Listener"]["Properties"]
    assert listener["Protocol"] == "HTTPS"
    assert listener["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]


def test_every_checkov_skip_says_why(resources: dict[str, Any]) -> None:
    skips = [
        s
        for r in resources.values()
        for s in r.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    assert all(len(s["comment"]) > 40 for s in skips)
