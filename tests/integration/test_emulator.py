"""`telemetry emulator`, compose's AWS emulation: its data survives a restart, and
a crash (no save) is caught by `provision --local`, which rebuilds the derived
data from what the emulator put back (issue 12: compose had the same problem
as `telemetry up` when its emulator container restarted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from telemetry.up import free_port

CLI = [sys.executable, "-m", "telemetry.cli"]


class Emulator:
    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.port = free_port()
        tag = uuid.uuid4().hex[:6]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TELEMETRY_"))}
        self.env.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.port}",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            TELEMETRY_DATABASE_URL=database_url,
            TELEMETRY_BUCKET=f"emu-{tag}",
            TELEMETRY_VISIBILITY_TIMEOUT_S="5",
        )
        self.ready = folder / "ready"
        self.proc: subprocess.Popen[bytes] | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        self.proc = subprocess.Popen(
            [*CLI, "emulator", "--host", "127.0.0.1", "--port", str(self.port),
             "--state-dir", str(self.folder / "state"), "--ready-file", str(self.ready)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not self.ready.exists():
                assert self.proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
            yield
        finally:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=90)

    def run(self, *args: str) -> str:
        out = subprocess.run(
            [*CLI, *args], env=self.env, capture_output=True, text=True, timeout=120
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout + out.stderr


def test_the_emulator_keeps_its_data_and_a_crash_is_rebuilt(
    tmp_path: Path, fresh_database_url: str
) -> None:
    emu = Emulator(tmp_path, fresh_database_url)
    with emu.running():
        emu.run("provision", "--local")
        key = emu.run("keys", "create", "--tenant", "emu").strip().splitlines()[-1]
    assert emu.proc is not None and emu.proc.returncode == 0  # SIGTERM saved and stopped
    assert (tmp_path / "state" / "manifest.json").is_file()

    with emu.running():  # a restart: the key is back, the generation matches
        said = emu.run("provision", "--local")
        assert "rebuilt" not in said, said
        found = emu.run("keys", "create", "--tenant", "emu")  # still works after restore
        assert found.strip().splitlines()[-1].startswith("tlm_")
        assert emu.proc is not None
        emu.proc.kill()  # a crash: nothing saved since the last start

    with emu.running():  # back from the older save, while the database moved on
        said = emu.run("provision", "--local")
        assert "rebuilt" in said, said
        assert key.startswith("tlm_")
