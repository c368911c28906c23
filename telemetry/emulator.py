"""`telemetry emulator`: the AWS emulation of docker compose, keeping its data.

moto in server mode, as `telemetry up` runs it, plus what makes a restart
safe: the data saved in `--state-dir` (a volume) is put back before the
emulator reports healthy, and saved again on SIGTERM. If the container died
without saving, the data put back is older than PostgreSQL's; `telemetry
provision --local`, which compose runs again whenever the emulator restarts,
sees the mismatch and rebuilds the derived data (telemetry/rebuild.py).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from shared.aws import open_aws
from shared.settings import Settings
from telemetry.commands import provision_command
from telemetry.snapshot import export_state

READY_FILE = Path("/tmp/telemetry-emulator-ready")


def emulator(host: str, port: int, state_dir: Path, ready_file: Path = READY_FILE) -> int:
    """Serve until SIGTERM; `ready_file` exists once the data is back (the healthcheck)."""
    from moto.server import ThreadedMotoServer

    from telemetry.moto_server import lighten

    lighten()
    ready_file.unlink(missing_ok=True)
    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # before any thread: only sigwait hears them
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    local = Settings().model_copy(
        update={
            "aws_endpoint_url": f"http://127.0.0.1:{port}",
            "aws_access_key_id": "emulator",
            "aws_secret_access_key": "emulator",
        }
    )
    try:
        settings = asyncio.run(provision_command(local, database=False, snapshot=state_dir))
        ready_file.touch()
        print(f"telemetry emulator: serving on {host}:{port}", flush=True)
        signal.sigwait(stops)
        print(f"telemetry emulator: saving its data to {state_dir}", flush=True)
        asyncio.run(_save(settings, state_dir))
    finally:
        ready_file.unlink(missing_ok=True)
        server.stop()
    return 0


async def _save(settings: Settings, state_dir: Path) -> None:
    async with open_aws(settings) as aws:
        await export_state(aws, settings, state_dir, settings.visibility_timeout_s + 10)
