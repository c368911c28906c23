"""Deployment files, parsed and checked against the declared pipeline. The
validators themselves (cfn-lint, checkov, helm lint, hadolint, compose) run in
deploy/check.sh; the tools live in .venv/tools (`make tools`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".venv" / "tools" / "bin"


def tool(name: str) -> str:
    """A validation tool: `make test` installs them first; missing is a failure."""
    path = TOOLS / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make tools`")
    return found


def setting_env_names() -> set[str]:
    """Every environment variable the services read."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"TELEMETRY_{name.upper()}")
        else:
            names.update(str(c) for c in alias.choices)  # type: ignore[union-attr]
    return names | {"TELEMETRY_LOG_LEVEL", "TELEMETRY_MOTO_PORT", "TELEMETRY_TEST_DATABASE_URL"}
