"""The real local stack for integration tests: a moto server over HTTP, a real
PostgreSQL (pgserver, or TELEMETRY_TEST_DATABASE_URL) and the services as
processes. No in-process mocks of AWS or the database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.aws import Aws, open_aws, with_account
from shared.db import async_url
from shared.pipeline import SERVICES
from shared.settings import Settings
from telemetry.commands import provision_command
from telemetry.keys import create_key
from telemetry.provision import migrate
from telemetry.up import free_port, start_moto, start_postgres, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    port = free_port()
    proc = start_moto(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("TELEMETRY_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    server, url = start_postgres(tmp_path_factory.mktemp("pg") / "data")
    try:
        yield url
    finally:
        server.cleanup()


@pytest.fixture
async def fresh_database_url(database_url: str) -> AsyncIterator[str]:
    """A migrated database of its own, dropped afterwards: for a test that empties
    tables (a rebuild) or counts everything in them."""
    url = make_url(async_url(database_url))
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {name}"))
    own = url.set(database=name).render_as_string(hide_password=False)
    await migrate(own)
    try:
        yield own.replace("postgresql+asyncpg://", "postgresql://", 1)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        await admin.dispose()


@pytest.fixture(scope="session")
def stack_env(
    moto_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment of every process: fast buffers so tests see results quickly."""
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "TELEMETRY_DATABASE_URL": database_url,
        "TELEMETRY_COLLECTOR_PORT": str(free_port()),
        "TELEMETRY_REPORT_PORT": str(free_port()),
        "TELEMETRY_BUFFER_MAX_AGE_S": "1",
        "TELEMETRY_DUMPER_IDLE_POLL_S": "0.2",
        "TELEMETRY_WORKER_WAIT_S": "1",
        "TELEMETRY_VISIBILITY_TIMEOUT_S": "10",
        "TELEMETRY_MAX_RECEIVES": "3",
        "TELEMETRY_DRAIN_TIMEOUT_S": "5",
        "TELEMETRY_COMPACT_AFTER": "4",
    }
    return env


def settings_of(env: dict[str, str]) -> Settings:
    fields = {
        (k.removeprefix("TELEMETRY_").lower() if k.startswith("TELEMETRY_") else k): v
        for k, v in env.items()
    }
    return Settings(**fields)


@pytest.fixture(scope="session")
async def settings(stack_env: dict[str, str]) -> Settings:
    """As the services see them: the bucket and topic named after moto's account."""
    return await with_account(settings_of(stack_env))


@pytest.fixture(scope="session")
async def provisioned(settings: Settings) -> Settings:
    return await provision_command(settings)


@pytest.fixture(scope="session")
async def aws(provisioned: Settings) -> AsyncIterator[Aws]:
    async with open_aws(provisioned) as clients:
        yield clients


class ServiceProcesses:
    """Services as processes, as `telemetry up` runs them; any can be killed and restarted."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env}
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.files: list[Any] = []
        self.urls = {
            "collector": f"http://127.0.0.1:{env['TELEMETRY_COLLECTOR_PORT']}",
            "report": f"http://127.0.0.1:{env['TELEMETRY_REPORT_PORT']}",
        }

    def start(self, service: str, instance: int = 0, **env: str) -> None:
        log = (self.logs / f"{service}-{instance}.log").open("ab")
        self.files.append(log)
        self.procs[f"{service}-{instance}"] = subprocess.Popen(
            [sys.executable, "-m", "telemetry.cli", service],
            env={**self.env, **env},
            stdout=log,
            stderr=log,
        )

    def kill(self, service: str, instance: int = 0) -> None:
        """SIGKILL: a crash, with whatever the process had in flight."""
        proc = self.procs[f"{service}-{instance}"]
        proc.kill()
        proc.wait()

    def wait_ready(self, timeout_s: float = 120) -> None:
        # Seven interpreters import at once: about 15 s of CPU on two cores,
        # far longer when the machine is shared. Bounded, never a sleep.
        wait_http(self.urls["collector"] + "/readyz", timeout_s)
        wait_http(self.urls["report"] + "/healthz", timeout_s)

    def stop(self) -> dict[str, int]:
        """SIGTERM everything; the exit codes show whether each drained cleanly."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        for f in self.files:
            f.close()
        return codes


@pytest.fixture(scope="session")
def services(
    provisioned: Settings, stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """One process of each service."""
    group = ServiceProcesses(stack_env, tmp_path_factory.mktemp("logs"))
    for name in SERVICES:
        port = str(free_port())
        group.start(name, TELEMETRY_METRICS_PORT=port)
        group.urls[f"{name}-metrics"] = f"http://127.0.0.1:{port}/metrics"
    try:
        group.wait_ready()
        yield group.urls
    finally:
        codes = group.stop()
        print(f"service exit codes: {codes}; logs in {group.logs}")


@pytest.fixture(scope="session")
def new_key(provisioned: Settings) -> Callable[..., Awaitable[str]]:
    """A key for a fresh tenant, so that tests never see each other's data."""

    async def make(tenant: str, scopes: str = "ingest,read") -> str:
        return await create_key(provisioned, tenant, scopes)

    return make


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client
