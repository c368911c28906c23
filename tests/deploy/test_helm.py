"""The Helm chart, rendered with the default and the production values, against
the declared pipeline (helm lint, schema validation and checkov run in
deploy/check.sh)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from shared.pipeline import STAGES, STOP_GRACE_S, Kind
from shared.settings import Settings
from tests.deploy.conftest import ROOT, setting_env_names, tool

CHART = ROOT / "deploy" / "helm" / "telemetry"
PRODUCTION = ROOT / "deploy" / "helm" / "production-values.yaml"
Manifests = dict[tuple[str, str], dict[str, Any]]


def render(*values: str) -> Manifests:
    args = [tool("helm"), "template", "telemetry", str(CHART), "-n", "telemetry"]
    for v in values:
        args += ["-f", v]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.fixture(scope="module", params=["default", "production"])
def manifests(request: pytest.FixtureRequest) -> Manifests:
    return render() if request.param == "default" else render(str(PRODUCTION))


def values() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return doc


def test_the_values_declare_the_pipeline() -> None:
    declared = values()["stages"]
    assert list(declared) == [s.name for s in STAGES]
    for stage in STAGES:
        v = declared[stage.name]
        assert v["kind"] == str(stage.kind)
        assert v.get("queues", []) == [q.env for q in stage.queues]
        assert bool(v.get("database")) == stage.database
        if stage.port_setting:
            assert v["port"] == getattr(Settings(), stage.port_setting)
        if stage.kind is not Kind.STREAM:
            scaling = v["autoscaling"]
            assert (scaling["min"], scaling["max"]) == (stage.scaling.min, stage.scaling.max)
            assert scaling.get("backlogPerReplica", 0) == stage.scaling.backlog_per_replica
            assert scaling.get("cpuPercent", 0) == stage.scaling.cpu_percent


def test_default_names_are_the_settings_defaults() -> None:
    defaults = Settings()
    for key, value in values()["config"].items():
        field = key.removeprefix("TELEMETRY_").lower()
        if key.startswith("TELEMETRY_") and field in Settings.model_fields:
            assert getattr(defaults, field) == Settings(**{field: value}).model_dump()[field], key


def deployment(m: Manifests, stage: str) -> dict[str, Any]:
    return m[("Deployment", f"telemetry-{stage}")]


def test_every_stage_runs_hardened_and_outlives_its_drain(manifests: Manifests) -> None:
    drain = Settings().drain_timeout_s
    config = manifests[("ConfigMap", "telemetry")]["data"]
    assert set(config) <= setting_env_names()
    for stage in STAGES:
        pod = deployment(manifests, stage.name)["spec"]["template"]["spec"]
        assert drain + 5 < pod["terminationGracePeriodSeconds"] == STOP_GRACE_S
        assert pod["securityContext"]["runAsNonRoot"] and not pod["automountServiceAccountToken"]
        (c,) = pod["containers"]
        assert c["args"] == [stage.name]
        assert {e["name"] for e in c["env"]} <= setting_env_names()
        security = c["securityContext"]
        assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
        assert security["capabilities"]["drop"] == ["ALL"]
        assert c["resources"]["limits"] and c["resources"]["requests"]
        paths = (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"])
        assert paths == (("/healthz", "/readyz") if stage.kind is Kind.HTTP else ("/metrics",) * 2)
        assert ("PodDisruptionBudget", f"telemetry-{stage.name}") in manifests
        assert (("Service", f"telemetry-{stage.name}") in manifests) == (stage.kind is Kind.HTTP)


def test_the_dumper_is_one_replica_replaced_not_rolled(manifests: Manifests) -> None:
    for stage in STAGES:
        if stage.kind is Kind.STREAM:
            spec = deployment(manifests, stage.name)["spec"]
            assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
            assert ("HorizontalPodAutoscaler", f"telemetry-{stage.name}") not in manifests
            assert ("ScaledObject", f"telemetry-{stage.name}") not in manifests


def test_queue_workers_scale_on_their_queues_with_keda() -> None:
    m = render(str(PRODUCTION))
    for stage in STAGES:
        if stage.kind is Kind.QUEUE:
            spec = m[("ScaledObject", f"telemetry-{stage.name}")]["spec"]
            triggers = [t["metadata"]["queueURLFromEnv"] for t in spec["triggers"]]
            assert triggers == [q.env for q in stage.queues]
            assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
                stage.scaling.min,
                stage.scaling.max,
            )
        elif stage.kind is Kind.HTTP:
            assert ("HorizontalPodAutoscaler", f"telemetry-{stage.name}") in m


def test_migrations_run_as_a_hook_before_the_pods(manifests: Manifests) -> None:
    job = manifests[("Job", "telemetry-migrate")]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_production_uses_irsa_a_digest_and_an_existing_secret() -> None:
    m = render(str(PRODUCTION))
    for stage in STAGES:
        account = m[("ServiceAccount", f"telemetry-{stage.name}")]
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(stage.name)
        image = deployment(m, stage.name)["spec"]["template"]["spec"]["containers"][0]["image"]
        assert "@sha256:" in image
    assert not any(kind == "Secret" for kind, _ in m)
    assert ("Ingress", "telemetry") in m
