"""The short commands: provisioning and API keys."""

from __future__ import annotations

from shared.auth import SCOPES, KeyStore
from shared.aws import open_aws
from shared.events import TENANT_RE
from shared.settings import Settings
from telemetry.provision import provision


class UsageError(ValueError):
    """Bad arguments on the command line."""


async def provision_command(settings: Settings) -> None:
    async with open_aws(settings) as aws:
        await provision(aws, settings)


def parse_scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    if not scopes or not scopes <= SCOPES:
        raise UsageError(f"scopes must be a comma-separated subset of {sorted(SCOPES)}")
    return scopes


async def create_key(settings: Settings, tenant: str, scopes: str) -> str:
    if not TENANT_RE.fullmatch(tenant):
        raise UsageError(f"tenant must match {TENANT_RE.pattern}")
    async with open_aws(settings) as aws:
        return await KeyStore(aws.dynamodb, settings.keys_table).create(
            tenant, parse_scopes(scopes)
        )
