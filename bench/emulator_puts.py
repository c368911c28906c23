"""What one real-time conditional put costs on this machine, emulator and client apart.

The real-time loader writes one conditional PutItem per ticket whose state
changed: about 257 per 1,000 events, 103 a second for one tenant at 400
events/s. Against moto each costs milliseconds of CPU on both sides (a new
TCP connection per request, since werkzeug closes every one; moto's
dispatch; botocore's signing), which AWS does not charge to our machine.
This prints that cost for moto's own server and for the one the local stack
runs (telemetry/moto_server.py), with the loader's client settings.

    .venv/bin/python -m bench.emulator_puts [--puts 3000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aioboto3

from shared.aws import client_config
from shared.settings import Settings
from telemetry.up import free_port, wait_http

TABLE = "bench-realtime"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(port: int, server: int, puts: int, concurrency: int) -> str:
    """One row: the emulator's (pid `server`) and this process's CPU per put."""
    settings = Settings.model_validate({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    session = aioboto3.Session(aws_access_key_id="b", aws_secret_access_key="b")
    async with session.client(
        "dynamodb", endpoint_url=settings.aws_endpoint_url, config=client_config(settings)
    ) as db:
        await db.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "tenant_id", "KeyType": "HASH"},
                       {"AttributeName": "ticket_id", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"}
                                  for a in ("tenant_id", "ticket_id")],
        )  # fmt: skip
        slots = asyncio.Semaphore(concurrency)

        async def put(i: int) -> None:
            async with slots:
                await db.put_item(
                    TableName=TABLE,
                    Item={"tenant_id": {"S": "t"}, "ticket_id": {"S": f"k{i}"},
                          "version": {"N": "3"}, "status": {"S": "waiting"}},
                    ConditionExpression="attribute_not_exists(version) OR version < :v",
                    ExpressionAttributeValues={":v": {"N": "3"}},
                )  # fmt: skip

        moto0, own0, wall0 = cpu_s(server), time.process_time(), time.monotonic()
        await asyncio.gather(*(put(i) for i in range(puts)))
        moto1, own1, wall1 = cpu_s(server), time.process_time(), time.monotonic()
    return (
        f"{1000 * (moto1 - moto0) / puts:.2f} | {1000 * (own1 - own0) / puts:.2f} "
        f"| {puts / (wall1 - wall0):.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--puts", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print("| server | emulator CPU ms / put | client CPU ms / put | puts/s |")
    print("|---|---:|---:|---:|")
    for module in ("moto.server", "telemetry.moto_server"):
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/moto-api/", 30)
            row = asyncio.run(measure(port, server.pid, args.puts, args.concurrency))
            print(f"| {module} | {row} |", flush=True)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
