"""`telemetry up` as a new user runs it: embedded stack, a key from another shell,
a ticket's metrics through the API, a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from telemetry.up import free_port
from tests.integration.helpers import event
from tests.integration.test_pipeline import at, recent_base


def test_up_then_keys_then_a_ticket_then_ctrl_c(tmp_path: Path) -> None:
    collector, report = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TELEMETRY_"))}
    env.update(
        TELEMETRY_MOTO_PORT=str(free_port()),
        TELEMETRY_COLLECTOR_PORT=str(collector),
        TELEMETRY_REPORT_PORT=str(report),
        TELEMETRY_BUFFER_MAX_AGE_S="1",
    )
    cli = [sys.executable, "-m", "telemetry.cli"]
    log = (tmp_path / "up.log").open("w+")
    up = subprocess.Popen([*cli, "up"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 90
        while "telemetry is up" not in (tmp_path / "up.log").read_text():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "telemetry up did not come up"
            time.sleep(0.5)
        # Another shell: only the checkout's .telemetry/local.env tells where things are.
        out = subprocess.run(
            [*cli, "keys", "create", "--tenant", "acme", "--scopes", "ingest,read"],
            cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        key = out.stdout.strip().splitlines()[-1]
        assert key.startswith("tlm_")
        b = recent_base()
        events = [
            event("acme", "T-up", "u1", "ticket_created", at(b, 0), channel="email", group_id="g"),
            event("acme", "T-up", "u2", "ticket_assigned", at(b, 45), agent_id="a"),
        ]
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=10) as http:
            resp = http.post(
                f"http://127.0.0.1:{collector}/v1/events", content=orjson.dumps(events),
                headers=headers,
            )  # fmt: skip
            assert resp.status_code == 202 and resp.json()["accepted"] == 2
            deadline = time.monotonic() + 30
            url = f"http://127.0.0.1:{report}/v1/tenants/acme/tickets/T-up"
            while (resp := http.get(url, headers=headers)).status_code == 404:
                assert time.monotonic() < deadline, "ticket not visible within 30 s"
                time.sleep(0.5)
            assert resp.json()["metrics"]["wait_time_ms"] == 45_000
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()
    assert (tmp_path / ".telemetry" / "pg").is_dir()
