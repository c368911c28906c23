"""docker-compose.yml as compose itself resolves it, against the pipeline."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from shared.pipeline import STAGES, STOP_GRACE_S, Kind
from tests.deploy.conftest import ROOT, setting_env_names, tool


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    command = [tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config"]
    out = subprocess.run(
        [*command, "--format", "json"], capture_output=True, text=True, check=True, timeout=60
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def test_every_stage_is_a_service_running_itself(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for stage in STAGES:
        svc = services[stage.name]
        assert svc["command"] == [stage.name]
        assert svc["depends_on"]["provision"]["condition"] == "service_completed_successfully"
        # Compose writes durations in its own format: 60s -> "1m0s".
        assert svc["stop_grace_period"] in (f"{STOP_GRACE_S}s", "1m0s")
        assert set(svc["environment"]) <= setting_env_names(), stage.name
        if stage.kind is Kind.STREAM:
            assert svc.get("deploy", {}).get("replicas") == 1
        published = {p["published"] for p in svc.get("ports", [])}
        assert bool(published) == (stage.kind is Kind.HTTP), stage.name


def test_the_emulator_is_reachable_from_this_machine_only(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            if name not in {s.name for s in STAGES}:
                assert port.get("host_ip") == "127.0.0.1", f"{name} is published on every interface"


def test_start_up_waits_for_real_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    emulator, postgres, provision = (
        services["emulator"],
        services["postgres"],
        services["provision"],
    )
    check = " ".join(emulator["healthcheck"]["test"])
    assert "telemetry-emulator-ready" in check and "/moto-api/" in check  # data back, serving
    pg = postgres["healthcheck"]["test"]
    assert "pg_isready" in pg and pg[pg.index("-h") + 1] == "127.0.0.1"
    assert provision["restart"] == "on-failure"
    assert provision["command"] == ["provision", "--local"]
    assert provision["depends_on"]["emulator"]["restart"] is True
    assert {k: v["condition"] for k, v in provision["depends_on"].items()} == {
        "emulator": "service_healthy",
        "postgres": "service_healthy",
    }


def _seconds(duration: str) -> float:
    """A Go duration as compose config prints it (`2m0s`)."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)([hms])", duration))


def test_the_emulator_keeps_its_data_in_a_volume(compose: dict[str, Any]) -> None:
    """Its data survives a restart of its container (telemetry emulator, tested in
    tests/integration/test_emulator.py); saving may take the visibility timeout."""
    emulator = compose["services"]["emulator"]
    assert emulator["build"]["target"] == "emulator"
    assert emulator["command"][:1] == ["emulator"]
    assert [v["target"] for v in emulator["volumes"]] == ["/data"]
    assert _seconds(emulator["stop_grace_period"]) >= 70


def test_a_first_key_is_printed(compose: dict[str, Any]) -> None:
    key = compose["services"]["demo-key"]
    assert key["command"][:2] == ["keys", "create"]
    assert key["depends_on"]["provision"]["condition"] == "service_completed_successfully"
