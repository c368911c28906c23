"""`telemetry up` as a new user runs it: embedded stack, a key from another shell,
a ticket's metrics through the API, a clean stop on Ctrl-C; and a restart that
keeps every ticket whole (issue 12: the emulator used to start empty while
PostgreSQL kept its data, and tickets came out partial)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from telemetry.up import free_port
from tests.integration.helpers import event
from tests.integration.test_pipeline import at, recent_base

CLI = [sys.executable, "-m", "telemetry.cli"]


class Up:
    """One checkout (`tmp_path`) whose stack is started and stopped like a user does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.collector, self.report = free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TELEMETRY_"))}
        self.env.update(
            TELEMETRY_MOTO_PORT=str(free_port()),
            TELEMETRY_COLLECTOR_PORT=str(self.collector),
            TELEMETRY_REPORT_PORT=str(self.report),
            TELEMETRY_BUFFER_MAX_AGE_S="1",
        )
        self.runs = 0

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """Up until the block ends, then Ctrl-C; yields what it printed so far."""
        self.runs += 1
        path = self.folder / f"up-{self.runs}.log"
        log = path.open("w+")
        up = subprocess.Popen([*CLI, "up"], cwd=self.folder, env=self.env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while "telemetry is up" not in path.read_text():
                assert up.poll() is None, path.read_text()
                assert time.monotonic() < deadline, "telemetry up did not come up"
                time.sleep(0.5)
            yield path.read_text()
        finally:
            up.send_signal(signal.SIGINT)
            code = up.wait(timeout=150)
            log.close()
        assert code == 0, path.read_text()

    def key(self, tenant: str) -> str:
        """From another shell: only the checkout's .telemetry/local.env tells where things are."""
        out = subprocess.run(
            [*CLI, "keys", "create", "--tenant", tenant, "--scopes", "ingest,read"],
            cwd=self.folder, env=self.env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        key = out.stdout.strip().splitlines()[-1]
        assert key.startswith("tlm_")
        return key

    def post(self, key: str, events: list[dict[str, Any]]) -> None:
        with httpx.Client(timeout=10) as http:
            resp = http.post(
                f"http://127.0.0.1:{self.collector}/v1/events", content=orjson.dumps(events),
                headers={"Authorization": f"Bearer {key}"},
            )  # fmt: skip
        assert resp.status_code == 202 and resp.json()["accepted"] == len(events), resp.text

    def ticket_when(
        self, key: str, tenant: str, ticket: str, done: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.report}/v1/tenants/{tenant}/tickets/{ticket}"
        deadline = time.monotonic() + 45
        last: Any = None
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < deadline:
                resp = http.get(url, headers={"Authorization": f"Bearer {key}"})
                if resp.status_code == 200 and done(last := resp.json()):
                    return last  # type: ignore[no-any-return]
                time.sleep(0.5)
        raise AssertionError(f"{ticket} not as expected within 45 s: {last}")


def test_up_then_keys_then_a_ticket_then_ctrl_c(tmp_path: Path) -> None:
    stack = Up(tmp_path)
    with stack.running():
        key = stack.key("acme")
        b = recent_base()
        stack.post(key, [
            event("acme", "T-up", "u1", "ticket_created", at(b, 0), channel="email", group_id="g"),
            event("acme", "T-up", "u2", "ticket_assigned", at(b, 45), agent_id="a"),
        ])  # fmt: skip
        doc = stack.ticket_when(key, "acme", "T-up", lambda d: d["metrics"]["wait_time_ms"])
        assert doc["metrics"]["wait_time_ms"] == 45_000
    assert (tmp_path / ".telemetry" / "pg").is_dir()


def test_a_restart_keeps_tickets_whole_and_an_older_snapshot_is_rebuilt(tmp_path: Path) -> None:
    stack = Up(tmp_path)
    b = recent_base()

    def e(ticket: str, n: int, etype: str, s: float, **f: Any) -> dict[str, Any]:
        return event("acme", ticket, f"{ticket}-{n}", etype, at(b, s), **f)

    created = {"channel": "whatsapp", "group_id": "g"}
    with stack.running():
        key = stack.key("acme")
        stack.post(key, [
            e("A", 1, "ticket_created", 0, **created),
            e("A", 2, "message_sent", 5, sender="customer"),
            e("B", 1, "ticket_created", 0, **created),
            e("B", 2, "ticket_assigned", 10, agent_id="a1"),
        ])  # fmt: skip
        stack.ticket_when(key, "acme", "A", lambda d: d["metrics"]["customer_messages"] == 1)
        stack.ticket_when(key, "acme", "B", lambda d: d["metrics"]["status"] == "assigned")
    saved = tmp_path / ".telemetry" / "aws"
    assert orjson.loads((saved / "manifest.json").read_bytes())["clean"]
    older = tmp_path / "older-snapshot"
    shutil.copytree(saved, older)

    after = [
        e("A", 3, "ticket_assigned", 60, agent_id="a2"),
        e("A", 4, "ticket_closed", 90, closed_by="agent"),
        e("B", 3, "ticket_closed", 70, closed_by="agent"),
    ]
    with stack.running():
        stack.post(key, after)  # the key survived the restart too
        a = stack.ticket_when(key, "acme", "A", lambda d: d["metrics"]["status"] == "closed")
        stack.ticket_when(key, "acme", "B", lambda d: d["metrics"]["status"] == "closed")
    assert a["metrics"]["customer_messages"] == 1 and a["metrics"]["wait_time_ms"] == 60_000
    assert [x["event_id"] for x in a["events"]] == ["A-1", "A-2", "A-3", "A-4"]

    # As after a crash: the emulator comes back from an older snapshot than the
    # database. The mismatch is seen and the database rebuilt from the store.
    shutil.rmtree(saved)
    shutil.copytree(older, saved)
    with stack.running() as printed:
        assert "rebuilt" in printed, printed
        a = stack.ticket_when(key, "acme", "A", lambda d: d["metrics"]["status"] == "waiting")
        assert [x["event_id"] for x in a["events"]] == ["A-1", "A-2"]
        stack.post(key, after)  # the producer sends again what was lost
        a = stack.ticket_when(key, "acme", "A", lambda d: d["metrics"]["status"] == "closed")
        assert a["metrics"]["customer_messages"] == 1 and a["metrics"]["wait_time_ms"] == 60_000
