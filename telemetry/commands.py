"""The short commands: provisioning and API keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shared.auth import SCOPES, KeyStore
from shared.aws import open_aws, with_account
from shared.db import make_engine
from shared.events import TENANT_RE
from shared.settings import Settings
from telemetry.provision import ensure_bucket, migrate, provision
from telemetry.rebuild import rebuild, reconcile
from telemetry.snapshot import import_objects, import_rest


class UsageError(ValueError):
    """Bad arguments on the command line."""


async def provision_command(
    settings: Settings,
    *,
    database: bool = True,
    local: bool = False,
    snapshot: Path | None = None,
    say: Callable[[str], object] = print,
) -> Settings:
    """Provision; returns the settings with the account's default names filled in.

    With the database, also check that it was derived from this bucket
    (telemetry/rebuild.py): `local` rebuilds on a mismatch, a deployment stops.
    `snapshot` is a folder of the local emulator's data to put back first.
    """
    settings = await with_account(settings)
    async with open_aws(settings) as aws:
        manifest = None
        if snapshot is not None:
            await ensure_bucket(aws, settings)
            manifest = await import_objects(aws, settings, snapshot)
        await provision(aws, settings, database=database)
        if snapshot is not None and manifest is not None:
            await import_rest(aws, settings, snapshot, manifest)
            say(f"telemetry: restored the emulator's data saved {manifest.exported_at}"
                f" ({len(manifest.objects)} objects)")  # fmt: skip
        if database:
            engine = make_engine(settings.require_database_url())
            try:
                for line in await reconcile(aws, settings, engine, local=local):
                    say(f"telemetry: {line}")
            finally:
                await engine.dispose()
    return settings


async def rebuild_command(settings: Settings) -> str:
    settings = await with_account(settings)
    async with open_aws(settings) as aws:
        engine = make_engine(settings.require_database_url())
        try:
            done = await rebuild(aws, settings, engine)
        finally:
            await engine.dispose()
    return (
        f"rebuilding: {done.tickets} tickets of {done.tenants} tenants queued;"
        " reports fill in as the pipeline loads them"
    )


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
