"""One bad ticket never holds back the others (issue 12, "losing data today").

Events from before validation refused them (a NUL in an id, a date in year 1)
are in some stores already. A batch that mixes such tickets with good ones
loads the good ones and parks the bad ones, with their reasons, where an
operator finds them; the message succeeds instead of retrying for half an hour.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.enricher.handler import enrich
from services.loader import realtime, reports
from shared.aws import Aws
from shared.db import make_engine, tickets
from shared.errors import is_transient
from shared.events import canonical
from shared.layout import decode_ndjson_lines, encode_ndjson, parked_key, stage_key
from shared.objects import get_bytes, put_bytes
from shared.settings import Settings
from tests.integration.helpers import event

PARKED_TOTAL = "telemetry_parked_tickets_total"


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
        parked_before = REGISTRY.get_sample_value(PARKED_TOTAL, {"stage": "reports"}) or 0
        await reports.handle(deps, key)  # does not raise: the message is done
        await reports.handle(deps, key)  # a redelivery changes nothing (but is counted)
        parked_now = REGISTRY.get_sample_value(PARKED_TOTAL, {"stage": "reports"})
        assert parked_now == parked_before + 2 * 3  # on /metrics
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


async def test_a_batch_met_while_postgresql_restarts_is_retried_whole_not_parked(
    aws: Aws, provisioned: Settings, tmp_path: Path
) -> None:
    """Found by `make bench-faults`: while pgserver's PostgreSQL restarts, its
    unix socket is absent, connecting raises FileNotFoundError, and the loader
    took that for the tickets' own fault: it parked good tickets, which then
    stayed out of the reports. An absent server is the infrastructure's."""
    tenant = f"restart-{uuid.uuid4().hex[:6]}"
    events = [e for t in ("r-1", "r-2") for e in ticket_events(tenant, t, "2026-11-20T10:00:00Z")]
    name = "0001764000000000-restart~a"
    key = stage_key("enriched", tenant, name)
    await put_bytes(aws.s3, provisioned.bucket, key, enriched(tenant, events))
    gone = tmp_path / "no-server-here"  # as PostgreSQL's socket folder while it restarts
    engine = make_engine(f"postgresql://postgres@/postgres?host={gone}")
    try:
        deps = reports.ReportLoaderDeps(
            s3=aws.s3, bucket=provisioned.bucket, engine=engine, dynamodb=aws.dynamodb,
            realtime_table=provisioned.realtime_table, calendars=provisioned.report_calendars(),
        )  # fmt: skip
        with pytest.raises(Exception) as raised:
            await reports.handle(deps, key)
    finally:
        await engine.dispose()
    assert is_transient(raised.value), repr(raised.value)  # the worker retries it in place
    listed = await aws.s3.list_objects_v2(
        Bucket=provisioned.bucket, Prefix=parked_key(tenant, "reports", name)
    )
    assert listed.get("KeyCount", 0) == 0
