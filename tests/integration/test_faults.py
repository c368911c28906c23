"""The fault suite, short (issue 12, "Proof"): a stack of `telemetry up` of its
own, a minute of simulated traffic during which each stage is killed with
SIGKILL once and the emulator is frozen; then every ticket and every report
must equal what the accepted events alone give. `make bench-faults` is the
long version (more kills, PostgreSQL frozen and restarted, the whole stack
restarted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_one_kill_of_each_stage_and_a_frozen_emulator_lose_and_break_nothing() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.faults", "--short", "--minutes", "1", "--freeze", "15"],
        capture_output=True, text=True, timeout=900, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    out = run.stdout + run.stderr
    line = re.search(r"faults injected (\d+), events accepted (\d+), tickets checked (\d+), "
                     r"tickets wrong (\d+)", out)  # fmt: skip
    assert line is not None, out
    faults, accepted, checked, wrong = (int(g) for g in line.groups())
    assert faults == 8, out  # seven stages killed, the emulator frozen
    assert accepted > 1000 and checked > 100, out
    assert wrong == 0, out
    assert "reports wrong 0" in out and "queues not empty: none" in out, out
    assert run.returncode == 0, out
