"""A dependency down or frozen gets clients a 503 with Retry-After within seconds,
in the contract's error shape, never a 500 page or a hang (issue 12).

"Frozen" is a listening socket that never answers: connections succeed and no
byte ever comes back, which is what a SIGSTOPped server looks like to a client.
"Down" is a port where nothing listens. The services run as processes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from telemetry.up import free_port
from tests.integration.conftest import ServiceProcesses
from tests.integration.helpers import event

DEADLINE_S = 3  # TELEMETRY_REQUEST_TIMEOUT_S of these processes
ANSWER_WITHIN_S = DEADLINE_S + 2


@pytest.fixture
def frozen_port() -> Iterator[int]:
    """Accepts connections (the kernel does) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(512)
        yield int(s.getsockname()[1])


def _closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


async def _timed(call: Callable[[], Awaitable[httpx.Response]]) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = await call()
    return response, time.monotonic() - start


def _assert_unavailable(response: httpx.Response, took: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert set(response.json()["error"]) == {"code", "message"}
    assert took < ANSWER_WITHIN_S, took


async def _start(services: ServiceProcesses, name: str, instance: int, env: dict[str, str]) -> str:
    port = str(free_port())
    var = "TELEMETRY_COLLECTOR_PORT" if name == "collector" else "TELEMETRY_REPORT_PORT"
    services.start(name, instance, **{var: port, "TELEMETRY_REQUEST_TIMEOUT_S": str(DEADLINE_S),
                                      "TELEMETRY_READYZ_CACHE_S": "0", **env})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(150):
            try:
                if (await http.get(url + "/healthz")).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{name} did not start")


async def test_database_down_or_frozen_answers_503_within_seconds(
    stack_env: dict[str, str], new_key: Callable[..., Awaitable[str]], frozen_port: int,
    tmp_path: Path,
) -> None:  # fmt: skip
    key = await new_key("outage-db", "read")
    group = ServiceProcesses(stack_env, tmp_path)
    try:
        urls = await asyncio.gather(
            *(
                _start(group, "report", i, {"TELEMETRY_DATABASE_URL": url})
                for i, url in enumerate(
                    [
                        f"postgresql://postgres@127.0.0.1:{frozen_port}/postgres",
                        f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres",
                    ]
                )
            )
        )
        headers = {"Authorization": f"Bearer {key}"}
        params = {"from": "2026-11-01", "to": "2026-11-02"}
        async with httpx.AsyncClient(timeout=30) as http:
            for url in urls:
                summary = f"{url}/v1/tenants/outage-db/reports/summary"
                results = await asyncio.gather(
                    _timed(lambda s=summary: http.get(s, params=params, headers=headers)),
                    _timed(
                        lambda u=url: http.get(
                            f"{u}/v1/tenants/outage-db/tickets/t-1", headers=headers
                        )
                    ),
                    _timed(lambda u=url: http.get(f"{u}/readyz")),
                )
                for response, took in results:
                    _assert_unavailable(response, took)
    finally:
        group.stop()


async def test_key_store_or_stream_frozen_answers_503_within_seconds(
    stack_env: dict[str, str], new_key: Callable[..., Awaitable[str]], frozen_port: int,
    tmp_path: Path,
) -> None:  # fmt: skip
    key = await new_key("outage-aws")
    frozen = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{frozen_port}"}
    group = ServiceProcesses(stack_env, tmp_path)
    try:
        collector, report = await asyncio.gather(
            _start(group, "collector", 0, frozen), _start(group, "report", 0, frozen)
        )
        headers = {"Authorization": f"Bearer {key}"}
        body = [event("outage-aws", "t-1", "e-1", "ticket_closed", "2026-11-20T10:00:00Z")]
        async with httpx.AsyncClient(timeout=30) as http:
            results = await asyncio.gather(
                _timed(lambda: http.post(f"{collector}/v1/events", json=body, headers=headers)),
                _timed(lambda: http.get(f"{collector}/readyz")),
                _timed(
                    lambda: http.get(f"{report}/v1/tenants/outage-aws/realtime", headers=headers)
                ),
                _timed(lambda: http.get(f"{report}/readyz")),
            )
        for response, took in results:
            _assert_unavailable(response, took)
    finally:
        group.stop()


async def test_a_loader_started_while_postgresql_restarts_waits_for_it(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    """Found by `make bench-faults`: a loader started while PostgreSQL was down
    (its unix socket absent) exited at once, to be restarted in a loop."""
    gone = tmp_path / "no-server-here"
    group = ServiceProcesses(stack_env, tmp_path)
    group.start("loader", 0, TELEMETRY_DATABASE_URL=f"postgresql://postgres@/postgres?host={gone}")
    log = tmp_path / "loader-0.log"
    try:
        deadline = time.monotonic() + 90
        while "report zones not registered" not in log.read_text():
            assert group.procs["loader-0"].poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # a retry later, still waiting
        assert group.procs["loader-0"].poll() is None, log.read_text()
    finally:
        group.stop()
