"""Quarter rows plus folded coarse rows are exact under disorder, retraction,
concurrent loaders and a concurrent folder, and reports read them as they read
the layout where the loader wrote every level (services/loader/folds.py). The
ledger (diffed, not rewritten) and the events (one row each) stay exact too."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from services.enricher.handler import ticket_record
from services.enricher.metrics import dedupe, evaluate
from services.loader import folds
from services.loader.folds import fold_closed
from services.loader.reports import load_records, measures, register_zones, ticket_row
from services.loader.rollups import Key, apply, contribution, measure_key
from services.report import queries
from services.report.stats import intervals
from shared.db import make_engine, ticket_measures, tickets
from shared.events import format_ms, to_ms
from shared.observe import FOLD_FAILURES, FOLD_OLDEST_AGE_SECONDS
from shared.rollups import Rollup, row_values
from shared.timebuckets import Calendar, calendars, end_of, epoch_s
from telemetry.simulate import ticket_life

CALS = calendars(("UTC", "America/Sao_Paulo", "Asia/Kathmandu"))
LOADERS = 4


def histories(rng: random.Random, tenant: str, now: datetime, n: int) -> list[list[dict[str, Any]]]:
    """Tickets whose lives end anywhere in the last 70 days, most of them recent."""
    out = []
    for i in range(n):
        back = timedelta(minutes=rng.choice([5, 40, 200, 2000, 20_000, 100_000]) * rng.random())
        out.append(ticket_life(rng, tenant, i, now - back))
    return out


def versions(rng: random.Random, tenant: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A record per growing prefix of the events in a random arrival order, so
    late events (and the creation) arrive after their periods were folded."""
    order = rng.sample(events, len(events))
    if rng.random() < 0.4:  # an event id sent again with other content: one variant is kept
        e = rng.choice(events)
        moved = format_ms(to_ms(datetime.fromisoformat(e["occurred_at"])) + rng.choice([-1, 1]))
        order.insert(rng.randrange(len(order) + 1), {**e, "occurred_at": moved})
    out = []
    for k in sorted(rng.sample(range(1, len(order) + 1), min(4, len(order)))):
        lines = [orjson.dumps(e) for e in order[:k]]
        deduped, version = dedupe(lines)
        out.append(ticket_record(tenant, events[0]["ticket_id"], version, evaluate(deduped)))
    return out


def from_scratch(final: list[dict[str, Any]]) -> dict[Key, Any]:
    """Every level's rows, as the loader that wrote all levels computed them."""
    rows: dict[Key, Rollup] = {}
    for rec in final:
        contribution(measures(rec), 1, rows, CALS)
    return {k: row_values(r.pruned()) for k, r in rows.items() if r.pruned()}


async def rollup_rows(engine: Any, tenant: str) -> dict[Key, Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT dim, level, bucket, dim_value, cells, hists, pcts FROM rollups"
                 " WHERE tenant_id = :t"), {"t": tenant})  # fmt: skip
        return {
            (dim, level, epoch_s(bucket), value): {"cells": cells, "hists": hists, "pcts": pcts}
            for dim, level, bucket, value, cells, hists, pcts in rows
        }


async def stored(engine: Any, tenant: str) -> tuple[dict[Key, Any], set[tuple[int, int]]]:
    """The tenant's rollup rows, and its unfolded buckets."""
    async with engine.connect() as conn:
        states = await conn.execute(
            text("SELECT level, bucket FROM rollup_folds WHERE tenant_id = :t AND NOT folded"),
            {"t": tenant},
        )
        unfolded = {(level, epoch_s(bucket)) for level, bucket in states}
    return await rollup_rows(engine, tenant), unfolded


async def reports(engine: Any, tenant: str, today: date) -> list[Any]:
    """Summaries, series, groups and agents over ranges that cover folded and open
    periods, in UTC, in report zones and in a zone without rows of its own."""
    out: list[Any] = []
    start = today - timedelta(days=75)
    for name in ("UTC", "America/Sao_Paulo", "Asia/Kathmandu", "Asia/Kolkata"):
        cal = next((c for c in CALS if c.name == name), None)
        zone = Calendar(name).zone
        series = ((start, "month"), (start, "week"), (today - timedelta(2), "hour"),
                  (today - timedelta(20), "day"))  # fmt: skip
        for first, granularity in series:
            _, bounds = intervals(first, today + timedelta(days=1), zone, granularity)
            for sla in (60, 45):
                out.append(await queries.summaries(engine, tenant, bounds, queries.Filters(),
                                                   sla, cal))  # fmt: skip
            group = queries.Filters(group_id="support")
            out.append(await queries.summaries(engine, tenant, bounds, group, 60, cal))
            out.append(await queries.groups(engine, tenant, bounds[0], bounds[-1], cal))
            out.append(await queries.agents(engine, tenant, bounds[0], bounds[-1], cal))
    return out


async def assert_reports_as_before_folds(
    engine: Any, tenant: str, reference: str, final: dict[str, Any], today: date
) -> None:
    """`tenant`'s reports equal those of a reference tenant whose every level is
    written at once from the final versions, as the loader did before folds."""
    deltas: dict[Key, Rollup] = {}
    for rec in final.values():
        contribution(measures({**rec, "tenant_id": reference}), 1, deltas, CALS)
    async with engine.begin() as conn:
        await apply(conn, reference, deltas)
    assert await reports(engine, tenant, today) == await reports(engine, reference, today)


@pytest.mark.parametrize("seed", [1, 2])
async def test_concurrent_loaders_and_folder_match_a_from_scratch_computation(
    fresh_database_url: str, seed: int
) -> None:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    tenant, reference = "folds", "reference"
    lives = histories(rng, tenant, now, 40)
    records = [r for life in lives for r in versions(rng, tenant, life)]
    records += rng.sample(records, len(records) // 3)  # redelivered, stale or not
    rng.shuffle(records)
    batches: list[list[dict[str, Any]]] = [[]]
    for r in records:  # a batch holds one record per ticket, as the enricher writes it
        if len(batches[-1]) >= rng.randint(1, 12) or any(
            r["ticket_id"] == o["ticket_id"] for o in batches[-1]
        ):
            batches.append([])
        batches[-1].append(r)
    engine = make_engine(fresh_database_url)
    try:
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)
        loading = True

        async def loader() -> None:
            while not queue.empty():
                await load_records(engine, queue.get_nowait(), CALS)
                await asyncio.sleep(0)

        async def folder() -> int:
            folded = 0
            while loading:  # no grace: folds race every batch of past periods
                folded += await fold_closed(engine, CALS, grace_s=0, limit=40)
                await asyncio.sleep(0.01)
            return folded

        folding = asyncio.create_task(folder())
        await asyncio.gather(*(loader() for _ in range(LOADERS)))
        loading = False
        assert await folding > 0  # the folder ran while the loaders did
        while await fold_closed(engine, CALS, grace_s=0):
            pass

        final = _latest(records)
        want = from_scratch(list(final.values()))
        got, unfolded = await stored(engine, tenant)
        assert unfolded, "the open periods stay unfolded"
        ends = [end_of(p, CALS) for p in unfolded]
        assert all(end is not None and end > to_ms(now) // 1000 for end in ends)
        # Quarters and folded buckets hold exactly their events; open ones hold nothing.
        # (a row whose measurements were all retracted stays, empty, as before)
        assert {k: v for k, v in want.items() if k[1:3] not in unfolded} == {
            k: v for k, v in got.items() if v["cells"] or v["hists"]
        }
        assert not {k for k in got if k[1:3] in unfolded}

        async with engine.connect() as conn:
            ledger = await conn.execute(
                text("SELECT * FROM ticket_measures WHERE tenant_id = :t"), {"t": tenant}
            )
            assert Counter(measure_key(m) for m in ledger.mappings()) == Counter(
                measure_key(m) for r in final.values() for m in measures(r)
            )
        for ticket, rec in final.items():  # what GET /v1/tickets/{id} answers
            view = {k: rec[k] for k in ("metrics", "group_stints", "agent_stints", "events")}
            assert await queries.ticket_doc(engine, tenant, ticket) == view

        await assert_reports_as_before_folds(engine, tenant, reference, final, now.date())
    finally:
        await engine.dispose()


def _migration(revision: str, *, down: bool = False) -> Any:
    def run(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(Path(migrations.__file__).parent))
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    return run


async def test_migration_0007_keeps_every_number_and_event(fresh_database_url: str) -> None:
    """A database the loader of 0006 wrote (every level, events in the doc) reads
    the same after 0007, and new versions and late events keep it exact."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    tenant, reference = "migrated", "reference"
    records = [r for life in histories(rng, tenant, now, 30) for r in versions(rng, tenant, life)]
    rng.shuffle(records)
    before = _latest(records[: len(records) // 2])
    engine = make_engine(fresh_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migration("0006", down=True))
        await register_zones(engine, CALS)
        deltas: dict[Key, Rollup] = {}
        async with engine.begin() as conn:  # what the loader of 0006 wrote
            for r in before.values():
                doc = {k: r[k] for k in ("metrics", "group_stints", "agent_stints", "events")}
                await conn.execute(insert(tickets), {**ticket_row(r), "doc": doc})
                await conn.execute(insert(ticket_measures), measures(r))
                contribution(measures(r), 1, deltas, CALS)
            await apply(conn, tenant, deltas)
        async with engine.begin() as conn:
            await conn.run_sync(_migration("head"))

        got, unfolded = await stored(engine, tenant)
        assert unfolded and not {k for k in got if k[1:3] in unfolded}  # open ones: quarters
        for ticket, rec in before.items():
            view = {k: rec[k] for k in ("metrics", "group_stints", "agent_stints", "events")}
            assert await queries.ticket_doc(engine, tenant, ticket) == view

        for i in range(len(records) // 2, len(records), 7):  # then the new loader, late events
            await load_records(engine, list(_latest(records[i : i + 7]).values()), CALS)
        while await fold_closed(engine, CALS, grace_s=0):
            pass
        final = _latest(records)
        got, unfolded = await stored(engine, tenant)
        want = from_scratch(list(final.values()))
        assert {k: v for k, v in want.items() if k[1:3] not in unfolded} == {
            k: v for k, v in got.items() if v["cells"] or v["hists"]
        }
        await assert_reports_as_before_folds(engine, tenant, reference, final, now.date())
    finally:
        await engine.dispose()


async def load_newest(
    engine: AsyncEngine, tenant: str, seed: int, lives: int
) -> dict[str, dict[str, Any]]:
    """The zones registered and the newest version of each of `lives` ticket lives
    of `tenant` loaded; returns those versions by ticket."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    records = [
        r for life in histories(rng, tenant, now, lives) for r in versions(rng, tenant, life)
    ]
    final = _latest(records)
    await register_zones(engine, CALS)
    await load_records(engine, list(final.values()), CALS)
    return final


def _latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["ticket_id"] not in out or out[r["ticket_id"]]["version"] < r["version"]:
            out[r["ticket_id"]] = r
    return out


async def test_a_bucket_that_fails_to_fold_does_not_stop_the_others(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold that fails for good is counted, tried after the others next round,
    and every other closed bucket folds; once it folds the gauge drops to 0."""
    tenant = "stuck"
    engine = make_engine(fresh_database_url)
    try:
        await load_newest(engine, tenant, seed=3, lives=12)
        _, before = await stored(engine, tenant)
        stuck = min((p for p in before if p[0] == 1), key=lambda p: p[1])  # an hour, first
        real = folds.fold

        async def failing(engine: Any, t: str, piece: Any, cals: Any) -> bool:
            if piece == stuck:
                raise ValueError("a bug in one bucket")
            return await real(engine, t, piece, cals)

        monkeypatch.setattr(folds, "fold", failing)
        failures = FOLD_FAILURES._value.get()
        failed: set[Any] = set()
        while await fold_closed(engine, CALS, grace_s=0, limit=5, failed=failed):
            pass
        _, unfolded = await stored(engine, tenant)
        assert (tenant, *stuck) in failed and stuck in unfolded
        assert FOLD_FAILURES._value.get() > failures
        assert FOLD_OLDEST_AGE_SECONDS._value.get() > 0
        # Only the stuck hour and the buckets holding it (and open ones) wait.
        holding = {p for p in unfolded if (end_of(p, CALS) or 0) <= time.time()}
        assert holding - {stuck} <= {p for p in before if p[1] <= stuck[1] < (end_of(p, CALS) or 0)}
        assert len(holding) < len({p for p in before if (end_of(p, CALS) or 0) <= time.time()})

        monkeypatch.setattr(folds, "fold", real)
        while await fold_closed(engine, CALS, grace_s=0, failed=failed):
            pass
        _, unfolded = await stored(engine, tenant)
        assert not failed and all((end_of(p, CALS) or 0) > time.time() for p in unfolded)
        assert FOLD_OLDEST_AGE_SECONDS._value.get() == 0
    finally:
        await engine.dispose()


async def test_downgrade_below_0007_writes_every_unfolded_bucket(fresh_database_url: str) -> None:
    """0006 reads coarse rows only: the downgrade folds every open or not yet
    folded bucket first, so every level holds its events, as 0006 wrote them."""
    tenant = "downgraded"
    engine = make_engine(fresh_database_url)
    try:
        final = await load_newest(engine, tenant, seed=11, lives=15)
        await fold_closed(engine, CALS, grace_s=0, limit=10)  # some folded, most not
        _, unfolded = await stored(engine, tenant)
        assert unfolded
        async with engine.begin() as conn:
            await conn.run_sync(_migration("0006", down=True))
        got = await rollup_rows(engine, tenant)  # rollup_folds is gone
        want = from_scratch(list(final.values()))
        assert want == {k: v for k, v in got.items() if v["cells"] or v["hists"]}
    finally:
        await engine.dispose()
