"""A synthetic history of one tenant, stored as the loader would have stored it.

Per-ticket facts are drawn with numpy (a daily curve, lognormal durations,
abandonments, transfers, messages, replies); their measurements are aggregated
into rollup rows with the loader's own buckets, bins, dimensions and cell
format. `measures_of` gives the same measurements as the loader's dicts, so a
test can check that `rows` equals what `services.loader.rollups.contribution`
makes of them. `laid_out` and `fold_states` keep what the loader and its folder
would have stored by a given time: quarter rows, the coarse rows of closed
buckets, and the fold state of every coarse bucket.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from shared.histogram import EDGES, at_most
from shared.rollups import SLA_CELL, SLA_MS, Rollup, combo, ranked, row_values
from shared.timebuckets import (
    LEVEL_SECONDS,
    QUARTER_S,
    Calendar,
    Piece,
    ancestors,
    calendar_buckets,
    end_of,
    epoch_s,
    instant,
)

Array = np.ndarray[Any, Any]
CHANNELS = ("whatsapp", "webchat")
GROUPS = tuple(f"group-{g}" for g in range(8))
PER_GROUP = 18
AGENTS = tuple(f"agent-{a:03d}" for a in range(len(GROUPS) * PER_GROUP))
KINDS = ("created", "closed", "abandoned", "transfers", "customer_message", "agent_message",
         "bot_message", "assigned", "first_response", "handle", "resolution", "reply",
         "group_stint", "agent_stint", "group_answered", "group_abandoned",
         "group_transferred")  # fmt: skip
K = {name: i for i, name in enumerate(KINDS)}
HOURLY = np.array(
    [1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 15, 14, 12, 13, 14, 14, 13, 11, 9, 7, 5, 3, 2, 1], dtype=float
)
LOCAL_OFFSET_H = -3  # the tenant works on São Paulo time


def _lognormal(rng: np.random.Generator, median_s: float, sigma: float, n: int) -> Array:
    return np.maximum(1, rng.lognormal(np.log(median_s * 1000), sigma, n)).astype(np.int64)


@dataclass
class History:
    """Ticket i's facts at index i of every array; replies are flat, by owner."""

    created: Array
    channel: Array
    group: Array
    agent: Array
    group2: Array  # -1, or the group a transfer sent the ticket to
    abandoned: Array
    wait: Array
    frt: Array
    handle: Array
    queue2: Array
    abandon_after: Array
    customer: Array
    agent_msgs: Array
    bot: Array
    reply_owner: Array
    reply_value: Array

    @property
    def n(self) -> int:
        return len(self.created)

    @property
    def assigned_at(self) -> Array:
        return self.created + self.wait

    @property
    def responded_at(self) -> Array:
        return self.created + self.wait + self.frt

    @property
    def closed_at(self) -> Array:
        out: Array = np.where(
            self.abandoned, self.created + self.abandon_after, self.assigned_at + self.handle
        )
        return out


def generate(tickets: int, days: int, end: datetime, seed: int = 7) -> History:
    rng = np.random.default_rng(seed)
    start_s = int(end.timestamp()) - days * 86400
    day = rng.integers(0, days, tickets)
    hour = rng.choice(24, tickets, p=HOURLY / HOURLY.sum())
    local = day * 86400 + hour * 3600 + rng.integers(0, 3600, tickets)
    created = np.sort((start_s + local - LOCAL_OFFSET_H * 3600) * 1000 + rng.integers(0, 1000))
    group = rng.choice(len(GROUPS), tickets, p=np.linspace(2, 1, len(GROUPS)) / 12)
    transferred = rng.random(tickets) < 0.12
    group2 = np.where(transferred, (group + 1 + rng.integers(0, 7, tickets)) % len(GROUPS), -1)
    last_group = np.where(transferred, group2, group)
    agent = last_group * PER_GROUP + rng.integers(0, PER_GROUP, tickets)
    abandoned = rng.random(tickets) < 0.08
    customer = rng.poisson(4, tickets) + 1
    agent_msgs = np.where(abandoned, 0, rng.poisson(3, tickets) + 1)
    replies = np.minimum(customer, agent_msgs)
    owner = np.repeat(np.arange(tickets), replies)
    return History(
        created=created,
        channel=(rng.random(tickets) < 0.3).astype(np.int64),
        group=group,
        agent=agent,
        group2=group2,
        abandoned=abandoned,
        wait=_lognormal(rng, 45, 1.0, tickets),
        frt=_lognormal(rng, 25, 0.8, tickets),
        handle=_lognormal(rng, 420, 0.7, tickets),
        queue2=_lognormal(rng, 30, 0.9, tickets),
        abandon_after=_lognormal(rng, 120, 0.9, tickets),
        customer=customer,
        agent_msgs=agent_msgs,
        bot=(rng.random(tickets) < 0.6).astype(np.int64),
        reply_owner=owner,
        reply_value=_lognormal(rng, 40, 1.0, len(owner)),
    )


@dataclass
class Measures:
    """Measurements as columns: ticket, time (ms), kind, value (-1: none), n, total,
    and the group of group stints."""

    ticket: Array
    at: Array
    kind: Array
    value: Array
    n: Array
    total: Array
    stint_group: Array


def measures(h: History) -> Measures:
    ok = ~h.abandoned
    idx = np.arange(h.n)
    trans = h.group2 >= 0
    second_end = h.assigned_at + h.handle // 2
    parts: list[tuple[Array, Array, str, Array | None, Array | int, Array | int, Array | int]] = [
        # ticket, at, kind, value, n, total, stint group
        (idx, h.created, "created", None, 1, 0, -1),
        (idx[ok], h.assigned_at[ok], "assigned", h.wait[ok], 1, h.wait[ok], -1),
        (idx[ok], h.responded_at[ok], "first_response", (h.wait + h.frt)[ok], 1,
         (h.wait + h.frt)[ok], -1),
        (idx, h.created, "customer_message", None, h.customer, 0, -1),
        (idx[h.bot > 0], h.created[h.bot > 0], "bot_message", None, h.bot[h.bot > 0], 0, -1),
        (idx[ok], h.responded_at[ok], "agent_message", None, h.agent_msgs[ok], 0, -1),
        (h.reply_owner, h.responded_at[h.reply_owner], "reply", h.reply_value, 1,
         h.reply_value, -1),
        (idx, h.closed_at, "closed", None, 1, h.closed_at - h.created, -1),
        (idx, h.closed_at, "transfers", None, 1, trans.astype(np.int64), -1),
        (idx[~ok], h.closed_at[~ok], "abandoned", None, 1, h.abandon_after[~ok], -1),
        (idx[ok], h.closed_at[ok], "resolution", (h.closed_at - h.created)[ok], 1,
         (h.closed_at - h.created)[ok], -1),
        (idx[ok], h.closed_at[ok], "handle", h.handle[ok], 1, h.handle[ok], -1),
        (idx[ok], h.closed_at[ok], "agent_stint", h.handle[ok], 1, h.handle[ok], -1),
    ]  # fmt: skip
    first_end = np.where(ok, h.assigned_at, h.closed_at)
    first_queue = np.where(ok, h.wait, h.abandon_after)
    for kind, mask in (("group_stint", idx >= 0), ("group_answered", ok),
                       ("group_abandoned", ~ok), ("group_transferred", trans & ok)):  # fmt: skip
        v = first_queue[mask] if kind == "group_stint" else None
        parts.append((idx[mask], first_end[mask], kind, v, 1, first_queue[mask], h.group[mask]))
    t2 = trans & ok
    for kind in ("group_stint", "group_answered"):
        v = h.queue2[t2] if kind == "group_stint" else None
        parts.append((idx[t2], second_end[t2], kind, v, 1, h.queue2[t2], h.group2[t2]))

    def col(x: Array | int, like: Array, dtype: Any = np.int64) -> Array:
        return np.broadcast_to(np.asarray(x, dtype=dtype), like.shape)

    return Measures(  # narrow types: 10 M tickets make 150 M measurements
        ticket=np.concatenate([p[0].astype(np.int32) for p in parts]),
        at=np.concatenate([p[1] for p in parts]),
        kind=np.concatenate([np.full(len(p[0]), K[p[2]], dtype=np.int8) for p in parts]),
        value=np.concatenate([col(-1 if p[3] is None else p[3], p[0]) for p in parts]),
        n=np.concatenate([col(p[4], p[0], np.int16) for p in parts]),
        total=np.concatenate([col(p[5], p[0]) for p in parts]),
        stint_group=np.concatenate([col(p[6], p[0], np.int8) for p in parts]),
    )


SUMMARY = np.array([k in {"created", "closed", "abandoned", "transfers", "customer_message",
                          "agent_message", "bot_message", "assigned", "first_response",
                          "handle", "resolution", "reply"} for k in KINDS])  # fmt: skip
AGENT = np.array([k in {"agent_stint", "agent_message", "first_response", "closed"} for k in KINDS])
GROUP = np.array([k.startswith("group_") for k in KINDS])
DIMS = ("all", "channel", "first_group", "last_agent", "combo", "group", "agent")


def dimension(h: History, m: Measures, dim: str) -> tuple[Array, Array, list[str]]:
    """The mask of the measurements counted in `dim`, the value index of each, and
    the values' names. Abandoned tickets have no last agent, nor a closing one."""
    t = m.ticket
    held = ~h.abandoned[t]
    if dim == "group":
        return GROUP[m.kind], m.stint_group, list(GROUPS)
    if dim == "agent":
        return AGENT[m.kind] & held, h.agent[t], list(AGENTS)
    mask = SUMMARY[m.kind]
    if dim == "all":
        return mask, np.zeros_like(t), [""]
    if dim == "channel":
        return mask, h.channel[t], list(CHANNELS)
    if dim == "first_group":
        return mask, h.group[t], list(GROUPS)
    if dim == "last_agent":
        return mask & held, h.agent[t], list(AGENTS)
    agents = [*AGENTS, None]  # None: never held
    names = [combo(c, g, a) for c in CHANNELS for g in GROUPS for a in agents]
    agent = np.where(held, h.agent[t], len(AGENTS))
    return mask, (h.channel[t] * len(GROUPS) + h.group[t]) * len(agents) + agent, names


def _aggregate(keys: Array, n: Array, total: Array) -> tuple[Array, Array, Array]:
    uniq, inverse = np.unique(keys, return_inverse=True)
    return (uniq, np.bincount(inverse, n, len(uniq)).astype(np.int64),
            np.bincount(inverse, total, len(uniq)).astype(np.int64))  # fmt: skip


KIND_BITS, BIN_BITS, VALUE_BITS = 5, 11, 12


def rows(h: History, m: Measures, dim: str, cals: tuple[Calendar, ...] = ()) -> Iterator[Row]:
    """Every rollup row of `dim`, as (dim, level, bucket, dim_value, cells JSON,
    hists, pcts JSON)."""
    mask, value_idx, names = dimension(h, m, dim)
    kind = m.kind[mask]
    quarter = m.at[mask] // (1000 * LEVEL_SECONDS[0])
    key = (quarter << (VALUE_BITS + KIND_BITS)) | (value_idx[mask].astype(np.int64) << KIND_BITS)
    key |= kind
    del quarter, value_idx  # 10 M tickets: keep the peak memory down
    n, total, value = m.n[mask], m.total[mask], m.value[mask]
    del mask
    with_hist = np.array([k in ranked(dim) for k in KINDS])
    hist = with_hist[kind] & (value >= 0)
    bins = np.searchsorted(np.asarray(EDGES), value[hist], side="left")
    bins_agg = _aggregate((key[hist] << BIN_BITS) | bins, n[hist], total[hist])
    del value, bins, hist, kind
    cells = _aggregate(key, n, total)
    del key, n, total
    for cal in cals:
        # the zone's own days (unless UTC), weeks and months, from the quarter hours
        for k, (level, _) in enumerate(calendar_buckets(cal.name, cal.code, 0)):
            start = {q: calendar_buckets(cal.name, cal.code, q * QUARTER_S)[k][1] // QUARTER_S
                     for q in np.unique(cells[0] >> (VALUE_BITS + KIND_BITS)).tolist()}  # fmt: skip
            yield from _emit(
                dim, level, 1,
                _regroup(cells, start, VALUE_BITS + KIND_BITS),
                _regroup(bins_agg, start, VALUE_BITS + KIND_BITS + BIN_BITS), names, with_hist,
            )  # fmt: skip
    ratio_prev = 1
    for level, width in enumerate(LEVEL_SECONDS):
        ratio = width // LEVEL_SECONDS[0]
        if level:
            cells = _coarser(cells, ratio_prev, ratio, VALUE_BITS + KIND_BITS)
            bins_agg = _coarser(bins_agg, ratio_prev, ratio, VALUE_BITS + KIND_BITS + BIN_BITS)
        ratio_prev = ratio
        yield from _emit(dim, level, ratio, cells, bins_agg, names, with_hist)


def _regroup(agg: tuple[Array, Array, Array], start: dict[int, int], shift: int) -> tuple[
        Array, Array, Array]:  # fmt: skip
    """Quarter-hour aggregates regrouped by the bucket each quarter falls in."""
    keys, n, total = agg
    quarters, inverse = np.unique(keys >> shift, return_inverse=True)
    buckets = np.array([start[q] for q in quarters.tolist()], dtype=np.int64)[inverse]
    return _aggregate((buckets << shift) | (keys & ((1 << shift) - 1)), n, total)


def _coarser(agg: tuple[Array, Array, Array], was: int, now: int, shift: int) -> tuple[
        Array, Array, Array]:  # fmt: skip
    keys, n, total = agg
    quarter = keys >> shift
    rest = keys & ((1 << shift) - 1)
    return _aggregate(((quarter * was // now) << shift) | rest, n, total)


Row = tuple[str, int, datetime, str, str, bytes, str]  # dim, level, bucket, value, columns


def _emit(
    dim: str, level: int, ratio: int, cells: tuple[Array, Array, Array],
    bins: tuple[Array, Array, Array], names: list[str], with_hist: Array,
) -> Iterator[Row]:  # fmt: skip
    """Cells (sorted by bucket, value, kind) and their bins, as rows."""
    low = (1 << (VALUE_BITS + KIND_BITS)) - 1
    bin_low = (1 << BIN_BITS) - 1
    kind_low = (1 << KIND_BITS) - 1
    bkeys, bn, bt = (x.tolist() for x in bins)
    j = 0
    current: tuple[int, int] | None = None
    row = Rollup()
    for key, n, total in zip(*(x.tolist() for x in cells), strict=True):
        at = (key >> (VALUE_BITS + KIND_BITS), (key & low) >> KIND_BITS)
        if at != current:
            if current is not None:
                yield _row(dim, level, current, ratio, names, row)
            current, row = at, Rollup()
        kind = KINDS[key & kind_low]
        row.cells[kind] = [n, total]
        if with_hist[key & kind_low]:
            hist = row.hists[kind] = {}
            while j < len(bkeys) and bkeys[j] >> BIN_BITS == key:
                hist[bkeys[j] & bin_low] = [bn[j], bt[j]]
                j += 1
            if kind == "first_response":
                row.cells[SLA_CELL] = [at_most(hist, limit) for limit in SLA_MS]
    if current is not None:
        yield _row(dim, level, current, ratio, names, row)


def _row(dim: str, level: int, at: tuple[int, int], ratio: int, names: list[str],
         row: Rollup) -> Row:  # fmt: skip
    bucket = instant(at[0] * ratio * LEVEL_SECONDS[0])
    columns = row_values(row)
    return (dim, level, bucket, names[at[1]], orjson.dumps(columns["cells"]).decode(),
            columns["hists"], orjson.dumps(columns["pcts"]).decode())  # fmt: skip


def closed(piece: Piece, cals: tuple[Calendar, ...], before_s: float) -> bool:
    """Whether the folder has folded a coarse bucket by `before_s` (now - its grace)."""
    end = end_of(piece, cals)
    return end is not None and end <= before_s


def laid_out(all_rows: Iterable[Row], cals: tuple[Calendar, ...], before_s: float) -> Iterator[Row]:
    """The rows as the loader and its folder leave them: every quarter hour, and
    the coarse rows of closed buckets only (an open one is read from its quarters)."""
    for row in all_rows:
        if row[1] == 0 or closed((row[1], epoch_s(row[2])), cals, before_s):
            yield row


def fold_states(
    m: Measures, cals: tuple[Calendar, ...], before_s: float
) -> Iterator[tuple[int, datetime, bool]]:
    """Rows of `rollup_folds` (level, bucket, folded): every coarse bucket holding
    a measured quarter, folded once closed."""
    quarters = np.unique(m.at // (1000 * QUARTER_S)) * QUARTER_S
    pieces = {p for q in quarters.tolist() for p in ancestors(q, cals)}
    for piece in sorted(pieces):
        yield piece[0], instant(piece[1]), closed(piece, cals, before_s)


def measures_of(h: History, i: int) -> list[dict[str, Any]]:
    """Ticket i's measurements as the loader's ledger rows (for the equivalence test)."""
    m = measures(h)
    out: list[dict[str, Any]] = []
    for j in np.flatnonzero(m.ticket == i).tolist():
        kind = KINDS[m.kind[j]]
        held = not h.abandoned[i]
        base = {"at": int(m.at[j]), "channel": CHANNELS[h.channel[i]],
                "first_group_id": GROUPS[h.group[i]],
                "last_agent_id": AGENTS[h.agent[i]] if held else None,
                "agent_id": None, "group_id": None, "answered": None, "abandoned": None,
                "transferred_out": None}  # fmt: skip
        if kind.startswith("group_") and kind != "group_stint":
            continue  # flags of the stint below
        if kind == "group_stint":
            g = int(m.stint_group[j])
            same = (m.ticket == i) & (m.stint_group == g) & (m.at == m.at[j])
            flags = {KINDS[k] for k in m.kind[same].tolist()}
            base |= {"group_id": GROUPS[g], "answered": "group_answered" in flags,
                     "abandoned": "group_abandoned" in flags,
                     "transferred_out": "group_transferred" in flags}  # fmt: skip
        if held and kind in ("first_response", "closed", "agent_stint", "agent_message"):
            base["agent_id"] = AGENTS[h.agent[i]]
        value = None if m.value[j] < 0 else int(m.value[j])
        if kind in ("transfers", "abandoned", "closed"):
            value = int(m.total[j])
        count = int(m.n[j])
        out.extend({**base, "kind": kind, "value_ms": value} for _ in range(count))
    return out


def ticket_rows(h: History, tenant: str) -> Iterator[tuple[Any, ...]]:
    """Rows of `tickets` (doc: metrics only; events are not generated)."""
    closed, assigned = h.closed_at.tolist(), h.assigned_at.tolist()
    responded, created = h.responded_at.tolist(), h.created.tolist()
    wait, frt, handle = h.wait.tolist(), h.frt.tolist(), h.handle.tolist()
    abandoned, transferred = h.abandoned.tolist(), (h.group2 >= 0).tolist()
    channel, group, agent = h.channel.tolist(), h.group.tolist(), h.agent.tolist()
    customer, agent_msgs, bot = h.customer.tolist(), h.agent_msgs.tolist(), h.bot.tolist()
    for i in range(h.n):
        ab = abandoned[i]
        first = None if ab else wait[i] + frt[i]
        resolution = closed[i] - created[i]
        metrics = {"status": "closed", "wait_time_ms": None if ab else wait[i],
                   "first_response_time_ms": first, "handle_time_ms": None if ab else handle[i],
                   "resolution_time_ms": resolution, "abandoned": ab,
                   "transfers": int(transferred[i])}  # fmt: skip
        yield (
            tenant, f"t-{i:08d}", 1, "closed", CHANNELS[channel[i]], GROUPS[group[i]],
            None if ab else AGENTS[agent[i]], _dt(created[i]), _dt(closed[i]),
            orjson.dumps({"metrics": metrics}).decode(),
            None if ab else _dt(assigned[i]), None if ab else _dt(responded[i]),
            metrics["wait_time_ms"], first, metrics["handle_time_ms"], resolution, ab,
            int(transferred[i]), customer[i], agent_msgs[i], bot[i],
        )  # fmt: skip


TICKET_COLUMNS = ("tenant_id", "ticket_id", "version", "status", "channel", "first_group_id",
                  "last_agent_id", "created_at", "closed_at", "doc", "first_assigned_at",
                  "first_response_at", "wait_time_ms", "first_response_time_ms",
                  "handle_time_ms", "resolution_time_ms", "abandoned", "transfers",
                  "customer_messages", "agent_messages", "bot_messages")  # fmt: skip


def _dt(ms: Any) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
