"""`telemetry up`: the whole stack in the foreground, on embedded defaults.

With neither `AWS_ENDPOINT_URL` nor `TELEMETRY_DATABASE_URL` set it starts
moto in server mode and a PostgreSQL from the `pgserver` wheel (data kept in
`.telemetry/pg`), puts back the emulator's data saved at the last stop
(`.telemetry/aws`, telemetry/snapshot.py), provisions, checks that the two
describe the same events (else rebuilds the derived data, with a message),
creates a first API key and runs every service as a child process, restarting
any that dies. Ctrl-C or SIGTERM stops the services, saves the emulator's data
and stops it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.aws import open_aws
from shared.pipeline import SERVICES
from shared.settings import LOCAL_ENV_FILE, Settings
from telemetry.commands import provision_command
from telemetry.keys import create_key
from telemetry.snapshot import export_state

DATA_DIR = Path(".telemetry")
SNAPSHOT_DIR = DATA_DIR / "aws"
STOP_GRACE_S = 45.0  # more than a worker's drain timeout
# `/metrics` of every service, each on a port of its own (never a public one).
METRICS_PORTS = {name: 9101 + i for i, name in enumerate(SERVICES)}


class StackError(RuntimeError):
    """The local stack could not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise StackError(f"{url} did not answer within {timeout_s:.0f} s")


def start_moto(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetry.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives Ctrl-C until the services have drained
    )
    wait_http(f"http://127.0.0.1:{port}/moto-api/", 30)
    return proc


def start_postgres(data_dir: Path) -> tuple[Any, str]:
    import pgserver

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")  # type: ignore[attr-defined]
    return server, str(server.get_uri())


def embedded_env(moto_port: int, database_url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "TELEMETRY_DATABASE_URL": database_url,
    }


def write_local_env(env: dict[str, str], path: Path = LOCAL_ENV_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))


class Supervisor:
    """Runs the services as children and restarts any that exits early."""

    def __init__(
        self,
        env: dict[str, str],
        metrics_ports: dict[str, int] = METRICS_PORTS,
        logs: Path | None = None,
    ) -> None:
        self.env = env
        self.metrics_ports = metrics_ports
        self.logs = logs  # a folder for one log file per service; None: this terminal
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        env = {**self.env, "TELEMETRY_METRICS_PORT": str(self.metrics_ports[name])}
        out = None if self.logs is None else (self.logs / f"{name}.log").open("ab")
        try:
            self.children[name] = subprocess.Popen(
                [sys.executable, "-m", "telemetry.cli", name], env=env, stdout=out, stderr=out
            )
        finally:
            if out is not None:
                out.close()  # the child has its own copy

    def restart_exited(self) -> list[str]:
        """Starts again every service that exited; returns their names."""
        exited = [name for name, proc in self.children.items() if proc.poll() is not None]
        for name in exited:
            print(f"telemetry: {name} exited with {self.children[name].returncode}; restarting")
            time.sleep(1)
            self.start(name)
        return exited

    def watch(self) -> None:
        """Until Ctrl-C or SIGTERM (both raise KeyboardInterrupt, see `up`)."""
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(0.5)
                self.restart_exited()

    def stop(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.children.clear()


# Past the in-flight wait, what exporting a large local bucket may take; a stopped
# or frozen emulator must not hold `telemetry up` (or a test's teardown) for longer.
SAVE_BOUND_S = 600.0


def save_emulator(
    settings: Settings, folder: Path = SNAPSHOT_DIR, bound_s: float | None = None
) -> None:
    """The emulator forgets everything when it stops: keep its data for the next start."""
    print(f"telemetry: saving the emulator's data to {folder} (Ctrl-C again loses it)")

    wait = settings.visibility_timeout_s + 10
    bound = wait + SAVE_BOUND_S if bound_s is None else bound_s

    async def save() -> None:
        async with open_aws(settings) as aws:
            manifest = await export_state(aws, settings, folder, in_flight_wait_s=wait)
        if not manifest.clean:
            print("telemetry: some messages were still in flight; the next start rebuilds")

    try:
        asyncio.run(asyncio.wait_for(save(), bound))
    except TimeoutError:  # objects are immutable: the manifest written last still holds
        print(f"telemetry: the emulator did not answer within {bound:.0f} s; "
              "the last saved data is kept")  # fmt: skip


class LocalStack:
    """What `telemetry up` starts and stops, in parts that the fault suite and
    the soak (bench/faults.py, bench/soak.py) also kill, freeze and restart.

    Embedded (no `AWS_ENDPOINT_URL` in `env`): moto on `TELEMETRY_MOTO_PORT`
    and PostgreSQL in `data_dir/pg`, the emulator's data saved in
    `data_dir/aws` at each stop and put back at each start. The environment
    of this process becomes the stack's, so `Settings()` reads what the
    services read.
    """

    def __init__(
        self,
        env: dict[str, str],
        data_dir: Path = DATA_DIR,
        metrics_ports: dict[str, int] = METRICS_PORTS,
        logs: Path | None = None,
    ) -> None:
        self.env = dict(env)
        self.data_dir = data_dir
        self.embedded = not env.get("AWS_ENDPOINT_URL")
        self.supervisor = Supervisor(self.env, metrics_ports, logs)  # shares self.env
        self.moto: subprocess.Popen[bytes] | None = None
        self.pg: Any = None
        self.settings: Settings | None = None  # as provisioned

    def start(self, say: Callable[[str], object] = print) -> Settings:
        """Emulator, database, provisioning (with the saved data), every service; ready."""
        if self.embedded:
            port = int(self.env.get("TELEMETRY_MOTO_PORT", "4566"))
            say(
                f"telemetry: starting moto on 127.0.0.1:{port} and PostgreSQL in {self.data_dir}/pg"
            )
            self.moto = start_moto(port)
            self.start_postgres()
            local = embedded_env(port, self.env["TELEMETRY_DATABASE_URL"])
            self.env.update(local)
            write_local_env(local, self.data_dir / LOCAL_ENV_FILE.name)
        os.environ.update(self.env)
        snapshot = self.data_dir / SNAPSHOT_DIR.name if self.embedded else None
        self.settings = settings = asyncio.run(
            provision_command(Settings(), local=True, snapshot=snapshot, say=say)
        )
        for name in SERVICES:
            self.supervisor.start(name)
        base = f"http://{settings.host}"
        wait_http(f"{base}:{settings.collector_port}/readyz", 60)
        wait_http(f"{base}:{settings.report_port}/healthz", 60)
        return settings

    def start_postgres(self) -> None:
        """Also to restart it (after `pg.cleanup()`): the same data at the same address."""
        self.pg, self.env["TELEMETRY_DATABASE_URL"] = start_postgres(self.data_dir / "pg")

    def stop(self, *, save: bool = True) -> None:
        """As at Ctrl-C: the services drain, the emulator's data is saved, all stops."""
        try:
            self.supervisor.stop()
            if save and self.moto is not None and self.settings is not None:
                save_emulator(self.settings, self.data_dir / SNAPSHOT_DIR.name)
        finally:  # a second Ctrl-C while saving still stops the emulator and PostgreSQL
            if self.moto is not None:
                self.moto.terminate()
                self.moto.wait(timeout=10)
                self.moto = None
            if self.pg is not None:
                self.pg.cleanup()
                self.pg = None
            self.settings = None


def up() -> int:
    # SIGTERM behaves as Ctrl-C from the first instant, so cleanup always runs;
    # SIGINT too when started in the background (`telemetry up &` in a script),
    # where the shell leaves it ignored and Python would not install its handler.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = Settings()
    if bool(settings.aws_endpoint_url) != bool(settings.database_url):
        print("telemetry up: set both AWS_ENDPOINT_URL and TELEMETRY_DATABASE_URL, or neither")
        return 2
    stack = LocalStack(dict(os.environ))
    try:
        settings = stack.start()
        key = asyncio.run(create_key(settings, "demo", "ingest,read"))
        base = f"http://{settings.host}"
        print(
            f"\ntelemetry is up\n"
            f"  collector  {base}:{settings.collector_port}/v1/events\n"
            f"  reports    {base}:{settings.report_port}/v1/tenants/demo/reports/summary\n"
            f"  dashboard  {base}:{settings.report_port}/dashboard (paste the api key below)\n"
            f"  openapi    {base}:{settings.report_port}/docs\n"
            f"  metrics    {base}:{{{min(METRICS_PORTS.values())}-{max(METRICS_PORTS.values())}}}"
            f"/metrics ({', '.join(f'{p} {n}' for n, p in METRICS_PORTS.items())})\n"
            f"  tenant     demo\n"
            f"  api key    {key}\n"
            f"Ctrl-C stops everything.\n",
            flush=True,
        )
        stack.supervisor.watch()
        return 0
    finally:
        stack.stop()
