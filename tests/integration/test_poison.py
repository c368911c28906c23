"""One bad ticket never holds back the others (issue 12, "losing data today").

Events from before validation refused them (a NUL in an id, a date in year 1)
are in some stores already. A batch that mixes such tickets with good ones
loads the good ones and parks the bad ones, with their reasons, where an
operator finds them; the message succeeds instead of retrying for half an hour.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import select

from services.enricher.handler import enrich
from services.loader import realtime, reports
from shared.aws import Aws
from shared.db import make_engine, tickets
from shared.events import canonical
from shared.layout import decode_ndjson_lines, encode_ndjson, parked_key, stage_key
from shared.objects import get_bytes, put_bytes
from shared.settings import Settings
from tests.integration.helpers import event


def ticket_events(tenant: str, ticket: str, at: str, group: str = "g1") -> list[dict[str, Any]]:
    created = {"channel": "webchat", "group_id": group}
    return [
        event(tenant, ticket, f"{ticket}-c", "ticket_created", at, **created),
        event(tenant, ticket, f"{ticket}-a", "ticket_assigned", at, agent_id="a1"),
        event(tenant, ticket, f"{ticket}-x", "ticket_closed", at),
    ]


def enriched(tenant: str, events: list[dict[str, Any]]) -> bytes:
    """What the enricher writes for these events, bypassing today's validation."""
    lines = [(orjson.dumps(e["ticket_id"]), canonical(e)) for e in events]
    records, failed = enrich(tenant, lines, set(lines))
    assert not failed
    return encode_ndjson(records)


async def test_a_batch_loads_its_good_tickets_and_parks_the_bad(
    aws: Aws, provisioned: Settings
) -> None:
    tenant = f"poison-{uuid.uuid4().hex[:6]}"
    at = "2026-11-20T10:00:00.000Z"
    good = [f"good-{i}" for i in range(5)]
    events = [e for t in good for e in ticket_events(tenant, t, at)]
    events += ticket_events(tenant, "nul\x00ticket", at)
    events += ticket_events(tenant, "ancient", "0001-01-05T00:00:00.000Z")
    events += ticket_events(tenant, "nul-group", at, group="g\x00")
    name = "0001764000000000-poison~a"
    key = stage_key("enriched", tenant, name)
    await put_bytes(aws.s3, provisioned.bucket, key, enriched(tenant, events))

    engine = make_engine(provisioned.require_database_url())
    try:
        deps = reports.ReportLoaderDeps(
            s3=aws.s3, bucket=provisioned.bucket, engine=engine, dynamodb=aws.dynamodb,
            realtime_table=provisioned.realtime_table, calendars=provisioned.report_calendars(),
        )  # fmt: skip
        await reports.handle(deps, key)  # does not raise: the message is done
        await reports.handle(deps, key)  # a redelivery changes nothing
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(tickets.c.ticket_id, tickets.c.status).where(tickets.c.tenant_id == tenant)
            )
            loaded = {t: status for t, status in rows}
    finally:
        await engine.dispose()
    assert loaded == dict.fromkeys(good, "closed")

    parked_data = await get_bytes(aws.s3, provisioned.bucket, parked_key(tenant, "reports", name))
    parked = [orjson.loads(line) for line in decode_ndjson_lines(parked_data)]
    assert sorted(p["ticket_id"] for p in parked) == sorted(
        ["ancient", "nul-group", "nul\x00ticket"]
    )
    assert all(p["reason"] and p["record"]["tenant_id"] == tenant for p in parked)

    # The real-time loader writes what DynamoDB takes (it stores NUL and year 1 alike).
    rt = realtime.RealtimeLoaderDeps(
        s3=aws.s3, dynamodb=aws.dynamodb, bucket=provisioned.bucket,
        table=provisioned.realtime_table,
    )  # fmt: skip
    await realtime.handle(rt, key)
