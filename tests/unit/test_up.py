"""`telemetry up`'s stop: saving the emulator's data is bounded."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from shared.settings import Settings
from telemetry.up import save_emulator


def test_a_frozen_emulator_does_not_hold_the_stop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A listener that accepts and never answers, as a stopped moto does: without
    the bound the first request alone waits 5 attempts of 30 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        settings = Settings.model_validate({
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t",
        })  # fmt: skip
        began = time.monotonic()
        save_emulator(settings, tmp_path / "aws", bound_s=1.0)
        assert time.monotonic() - began < 20
    assert "did not answer within 1 s" in capsys.readouterr().out
    assert not (tmp_path / "aws" / "manifest.json").exists()
