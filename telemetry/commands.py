"""The short commands: provisioning and API keys."""

from __future__ import annotations

from shared.auth import SCOPES, KeyStore
from shared.aws import open_aws, with_account
from shared.events import TENANT_RE
from shared.settings import Settings
from telemetry.provision import migrate, provision


class UsageError(ValueError):
    """Bad arguments on the command line."""


async def provision_command(settings: Settings, *, database: bool = True) -> Settings:
    """Provision; returns the settings with the account's default names filled in."""
    settings = await with_account(settings)
    async with open_aws(settings) as aws:
        await provision(aws, settings, database=database)
    return settings


async def migrate_command(settings: Settings) -> None:
    """The schema alone: what a deployment runs before each release."""
    await migrate(settings.require_database_url())


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
