"""The `telemetry` command line (SPEC §4)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path

from shared.aws import with_account
from shared.pipeline import SERVICES, Resource, stage
from shared.service import setup_logging
from shared.settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telemetry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the whole stack locally, in the foreground")
    prov = sub.add_parser("provision", help="create every AWS resource and the schema (idempotent)")
    prov.add_argument(
        "--skip-database", action="store_true", help="AWS resources only; no schema migration"
    )
    prov.add_argument(
        "--local",
        action="store_true",
        help="a local stack: rebuild the derived data if the emulator lost or rolled back its own",
    )
    sub.add_parser(
        "rebuild",
        help="empty PostgreSQL's tickets and rollups and the real-time view, and derive them"
        " again from the ticket store (the running pipeline loads them)",
    )
    emu = sub.add_parser("emulator", help="the AWS emulation, keeping its data (docker compose)")
    emu.add_argument("--host", default="0.0.0.0")
    emu.add_argument("--port", type=int, default=5000)
    emu.add_argument("--state-dir", type=Path, default=Path("/data"))
    emu.add_argument("--ready-file", type=Path, default=Path("/tmp/telemetry-emulator-ready"))
    sub.add_parser("migrate", help="migrate the database schema to this version (idempotent)")
    keys = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="print a new API key (stored hashed)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", default="ingest,read")
    sim = sub.add_parser("simulate", help="send realistic traffic to the collector")
    sim.add_argument("--tenants", type=int, default=2)
    sim.add_argument("--rate", type=float, default=100.0, help="events per second")
    sim.add_argument("--duration", type=float, default=30.0, help="seconds")
    sim.add_argument("--collector", default=None, help="collector URL (default: local)")
    sim.add_argument("--out", default=None, help="also write the events to this NDJSON file")
    sim.add_argument("--seed", type=int, default=None)
    for name in SERVICES:
        sub.add_parser(name, help=f"run the {name} service")
    return parser


def main(argv: list[str] | None = None) -> int:
    from telemetry.commands import UsageError
    from telemetry.provision import ProvisionError

    try:
        return _run(_parser().parse_args(argv))
    except UsageError as exc:
        print(f"telemetry: {exc}", file=sys.stderr)
        return 2
    except ProvisionError as exc:
        print(f"telemetry: {exc}", file=sys.stderr)
        return 1


async def _serve(name: str, settings: Settings) -> None:
    module = importlib.import_module(f"services.{name}.main")
    if {g.resource for g in stage(name).grants} & {Resource.BUCKET, Resource.TOPIC}:
        settings = await with_account(settings)
    await module.run(settings)


def _run(args: argparse.Namespace) -> int:
    if args.command in SERVICES:
        setup_logging(args.command)
        asyncio.run(_serve(args.command, load_settings()))
        return 0
    if args.command == "up":
        from telemetry.up import up

        return up()
    if args.command == "emulator":
        from telemetry.emulator import emulator

        return emulator(args.host, args.port, args.state_dir, args.ready_file)
    settings = load_settings(local_env=True)
    if args.command == "provision":
        from telemetry.commands import provision_command

        asyncio.run(provision_command(settings, database=not args.skip_database, local=args.local))
        print("provisioned" + (" (without the database)" if args.skip_database else ""))
        return 0
    if args.command == "rebuild":
        from telemetry.commands import rebuild_command

        print(asyncio.run(rebuild_command(settings)))
        return 0
    if args.command == "migrate":
        from telemetry.commands import migrate_command

        asyncio.run(migrate_command(settings))
        print("migrated")
        return 0
    if args.command == "keys":
        from telemetry.commands import create_key

        print(asyncio.run(create_key(settings, args.tenant, args.scopes)))
        return 0
    from telemetry.simulate import simulate_command

    return asyncio.run(simulate_command(settings, args))


if __name__ == "__main__":
    sys.exit(main())
