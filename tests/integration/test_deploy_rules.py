"""What real AWS needs of provisioning and of the services: names no other
account holds, no silent half-provisioning, and no action a stage's declared
IAM policy would refuse."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import httpx
import pytest

from shared.aws import Aws, open_aws
from shared.pipeline import STAGES
from shared.settings import Settings
from telemetry.commands import provision_command
from telemetry.provision import ProvisionError
from tests.integration.helpers import event, eventually
from tests.integration.test_pipeline import KeyMaker, at, post, recent_base

MOTO_ACCOUNT = "123456789012"
SAMPLE = re.compile(r'telemetry_aws_requests_total\{service="(\w+)",operation="(\w+)"\} (\d+)')
# botocore operations whose IAM action has another name.
ACTION_OF = {
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "DeleteObjects"): "s3:DeleteObject",
}
NO_PERMISSION_NEEDED = {"sts:GetCallerIdentity"}


def test_the_default_bucket_is_named_after_the_account(provisioned: Settings) -> None:
    assert provisioned.bucket == f"telemetry-{MOTO_ACCOUNT}-us-east-1"
    assert provisioned.topic_arn == f"arn:aws:sns:us-east-1:{MOTO_ACCOUNT}:{provisioned.topic}"


async def test_a_bucket_of_another_account_is_an_error(provisioned: Settings) -> None:
    taken = "telemetry-taken-by-someone-else"
    async with open_aws(provisioned) as other:

        def as_other_account(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = "210987654321"

        other.s3.meta.events.register("before-sign.s3.*", as_other_account)
        await other.s3.create_bucket(Bucket=taken)
    mine = provisioned.model_copy(update={"bucket": taken})
    with pytest.raises(ProvisionError, match="belongs to another AWS account"):
        await provision_command(mine)


def test_provision_without_a_database_is_an_error_unless_skipped(
    provisioned: Settings, stack_env: dict[str, str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TELEMETRY_"))}
    env.update({k: v for k, v in stack_env.items() if k != "TELEMETRY_DATABASE_URL"})
    cli = [sys.executable, "-m", "telemetry.cli", "provision"]
    refused = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "TELEMETRY_DATABASE_URL is not set" in refused.stderr
    assert "provisioned" not in refused.stdout
    skipped = subprocess.run(
        [*cli, "--skip-database"], env=env, capture_output=True, text=True, timeout=120
    )
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.strip() == "provisioned (without the database)"


async def test_every_stage_calls_only_the_actions_it_declares(
    services: dict[str, str], new_key: KeyMaker, http: httpx.AsyncClient, aws: Aws
) -> None:
    """Each process counts its AWS requests by operation; after a ticket went
    through every stage, each stage's operations are within its declared
    actions (the task roles and IRSA policies are built from them), and none is
    a Create* call."""
    tenant = "iam-check"
    key = await new_key(tenant)
    b = recent_base()
    await post(
        http,
        services["collector"],
        key,
        [event(tenant, "T-iam", "i1", "ticket_created", at(b, 0), channel="email", group_id="g")],
    )
    headers = {"Authorization": f"Bearer {key}"}

    async def realtime() -> int:
        resp = await http.get(f"{services['report']}/v1/tenants/{tenant}/realtime", headers=headers)
        return int(resp.json()["waiting_now"]["total"])

    await eventually(realtime, lambda n: n == 1)
    for stage in STAGES:
        url = services.get(f"{stage.name}-metrics") or services[stage.name] + "/metrics"
        text = (await http.get(url)).text
        used = {ACTION_OF.get((svc, op), f"{svc}:{op}") for svc, op, _ in SAMPLE.findall(text)}
        assert used, f"{stage.name} made no AWS request"
        assert not {a for a in used if a.split(":")[1].startswith("Create")}, stage.name
        undeclared = used - stage.actions() - NO_PERMISSION_NEEDED
        assert not undeclared, f"{stage.name} calls {sorted(undeclared)} it does not declare"
