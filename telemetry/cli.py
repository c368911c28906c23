"""The `telemetry` command line (SPEC §4)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path

from shared.aws import with_account
from shared.logs import setup_logging
from shared.pipeline import SERVICES, Resource, stage
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
    create.add_argument(
        "--expires", default=None, help="a duration (90m, 12h, 30d, 2w) or a date; default never"
    )
    listing = keys.add_parser("list", help="keys by id and public prefix (never the secret)")
    listing.add_argument("--tenant", default=None)
    listing.add_argument("--all", action="store_true", help="revoked and expired keys too")
    revoke = keys.add_parser("revoke", help="revoke a key by its id (effective within 5 s)")
    revoke.add_argument("key_id")
    dlq = sub.add_parser("dlq", help="dead-letter queues").add_subparsers(
        dest="dlq_command", required=True
    )
    dlq.add_parser("list", help="every dead-letter queue: depth and oldest message")
    show = dlq.add_parser("show", help="dead letters of QUEUE with their reasons (left in place)")
    redrive = dlq.add_parser("redrive", help="send QUEUE's dead letters back to it")
    purge = dlq.add_parser("purge", help="delete QUEUE's dead letters")
    for cmd in (show, redrive, purge):
        cmd.add_argument("queue", help="a work queue or its dead-letter queue, by name")
    show.add_argument("--limit", type=int, default=10)
    purge.add_argument("--yes", action="store_true", help="yes, delete them")
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
        from telemetry import keys

        if args.keys_command == "create":
            print(asyncio.run(keys.create_key(settings, args.tenant, args.scopes, args.expires)))
        elif args.keys_command == "list":
            print(asyncio.run(keys.list_keys_command(settings, args.tenant, args.all)))
        else:
            print(asyncio.run(keys.revoke_key_command(settings, args.key_id)))
        return 0
    if args.command == "dlq":
        from telemetry import dlq

        if args.dlq_command == "list":
            print(asyncio.run(dlq.list_command(settings)))
        elif args.dlq_command == "show":
            print(asyncio.run(dlq.show_command(settings, args.queue, args.limit)))
        elif args.dlq_command == "redrive":
            print(asyncio.run(dlq.redrive_command(settings, args.queue)))
        else:
            print(asyncio.run(dlq.purge_command(settings, args.queue, args.yes)))
        return 0
    from telemetry.simulate import simulate_command

    return asyncio.run(simulate_command(settings, args))


if __name__ == "__main__":
    sys.exit(main())
