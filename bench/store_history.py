"""A synthetic ticket-store history, written straight into the store's layout.

Each ticket is a pure function of (seed, day, n): about 12 events (a bot
greeting, customer and agent messages, an assignment, sometimes an abandon or
a transfer, a closing; 1% stay open), created along a daily curve. Its lines
are canonical JSON written directly (string values only, keys in RFC 8785
order), which `tests/unit/test_bench_store.py` checks against
`shared.events.canonical`.

`write_history` leaves the store as its compaction would have: a major merge
at the end of each day sealing what is then closed and idle longer than the
retention (or idle past the open retention) into a cold run, cold runs merged
tiered by the store's own plan, each run written once in its final shape by
the store's own writer; what is not sealed is the hot partition's major
file. `tests/integration/test_bench_store.py` feeds the same events through
`TicketStore.merge` and compaction and finds the same lines, hot and cold.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from services.consolidator.manifest import ColdFile, ColdRun, Manifest
from services.consolidator.merging import COLD_FILE_BYTES, FileSink
from services.consolidator.partition import Policy
from services.consolidator.runs import CLOSED, ZLIB, Ticket, token_hashes
from services.consolidator.state import ROOT, TenantState, depth
from services.consolidator.store import TicketStore
from shared.events import format_ms
from shared.layout import cold_file_key, epoch_marker_key, hot_file_key, manifest_key, new_batch_id

DAY_MS = 86_400_000
HOURLY = (1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 15, 14, 12, 13, 14, 14, 13, 11, 9, 7, 5, 3, 2, 1)
CUMULATIVE = (np.cumsum(HOURLY) / sum(HOURLY)).tolist()
GROUPS = 8
AGENTS_PER_GROUP = 18  # 144 agents
CHANNELS = ("whatsapp", "webchat", "email", "other")


def ticket_id(seed: int, day: int, n: int) -> str:
    return hashlib.blake2b(f"{seed}/{day}/{n}".encode(), digest_size=8).hexdigest()


MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


class _Draws:
    """splitmix64: a ticket's random numbers from (seed, day, n), in any order of tickets."""

    def __init__(self, seed: int, day: int, n: int) -> None:
        self.x = (seed * GOLDEN + day * 1_000_003 + n * 7919) & MASK

    def uniform(self) -> float:
        self.x = (self.x + GOLDEN) & MASK
        z = self.x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return (z ^ (z >> 31)) / 2.0**64

    def below(self, n: int) -> int:
        return int(self.uniform() * n)

    def between(self, a: int, b: int) -> int:
        return a + int(self.uniform() * (b - a + 1))


CREATED = ('{"channel":"%s","event_id":"%s-%d","group_id":"g%d","occurred_at":"%s",'
           '"tenant_id":"%s","ticket_id":"%s","type":"ticket_created"}')  # fmt: skip
MESSAGE = ('{"event_id":"%s-%d","occurred_at":"%s","sender":"%s","tenant_id":"%s",'
           '"ticket_id":"%s","type":"message_sent"}')  # fmt: skip
AGENT_MESSAGE = ('{"agent_id":"%s","event_id":"%s-%d","occurred_at":"%s","sender":"agent",'
                 '"tenant_id":"%s","ticket_id":"%s","type":"message_sent"}')  # fmt: skip
ASSIGNED = ('{"agent_id":"%s","event_id":"%s-%d","group_id":"g%d","occurred_at":"%s",'
            '"tenant_id":"%s","ticket_id":"%s","type":"ticket_assigned"}')  # fmt: skip
TRANSFERRED = ('{"event_id":"%s-%d","occurred_at":"%s","tenant_id":"%s","ticket_id":"%s",'
               '"to_group_id":"g%d","type":"ticket_transferred"}')  # fmt: skip
CLOSED_BY = ('{"closed_by":"%s","event_id":"%s-%d","occurred_at":"%s","tenant_id":"%s",'
             '"ticket_id":"%s","type":"ticket_closed"}')  # fmt: skip


@dataclass(frozen=True)
class Model:
    """The tenant: its id, its volume, and where its day 0 starts (epoch ms, a UTC midnight)."""

    tenant: str
    seed: int
    tickets_per_day: int
    day0_ms: int

    def lines(self, day: int, n: int) -> tuple[list[bytes], int, int]:
        """Ticket n of `day`: its canonical event lines (sorted), newest time, flags."""
        r = _Draws(self.seed, day, n)
        tid = ticket_id(self.seed, day, n)
        u = r.uniform()
        hour = next(h for h, c in enumerate(CUMULATIVE) if u <= c)
        t = self.day0_ms + day * DAY_MS + int(3_600_000 * (hour + r.uniform()))
        tenant = self.tenant
        out: list[str] = []
        group = r.below(GROUPS)
        out.append(CREATED % (CHANNELS[r.below(4)], tid, 1, group, _stamp(t), tenant, tid))
        t += r.between(300, 1500)
        out.append(MESSAGE % (tid, 2, _stamp(t), "bot", tenant, tid))
        t += r.between(2_000, 20_000)
        out.append(MESSAGE % (tid, 3, _stamp(t), "customer", tenant, tid))
        if r.uniform() < 0.1:  # abandoned
            t += r.between(60_000, 180_000)
            out.append(CLOSED_BY % ("customer", tid, 4, _stamp(t), tenant, tid))
            return sorted(o.encode() for o in out), t, CLOSED
        t += int(-60_000 * math.log(1 - r.uniform()))  # waits a minute on average
        agent = f"a{group}-{r.below(AGENTS_PER_GROUP)}"
        out.append(ASSIGNED % (agent, tid, 4, group, _stamp(t), tenant, tid))
        for _ in range(r.between(1, 6)):
            t += r.between(10_000, 90_000)
            out.append(AGENT_MESSAGE % (agent, tid, len(out) + 1, _stamp(t), tenant, tid))
            t += r.between(10_000, 120_000)
            out.append(MESSAGE % (tid, len(out) + 1, _stamp(t), "customer", tenant, tid))
        if r.uniform() < 0.1:
            group = (group + 1 + r.below(GROUPS - 1)) % GROUPS
            t += r.between(2_000, 20_000)
            out.append(TRANSFERRED % (tid, len(out) + 1, _stamp(t), tenant, tid, group))
            agent = f"a{group}-{r.below(AGENTS_PER_GROUP)}"
            t += r.between(30_000, 300_000)
            out.append(ASSIGNED % (agent, tid, len(out) + 1, group, _stamp(t), tenant, tid))
        flags = 0
        if r.uniform() < 0.99:
            t += r.between(30_000, 300_000)
            out.append(CLOSED_BY % ("agent", tid, len(out) + 1, _stamp(t), tenant, tid))
            flags = CLOSED
        return sorted(o.encode() for o in out), t, flags

    def ticket(self, day: int, n: int) -> Ticket:
        """The ticket as the store holds it: its lines and their summary."""
        lines, last, flags = self.lines(day, n)
        token = f'"{ticket_id(self.seed, day, n)}"'.encode()
        return Ticket(token, b"\n".join(lines), last, flags)


_DATES: dict[int, str] = {}


def _stamp(ms: int) -> str:
    """format_ms, faster: the date of each day once."""
    day, rest = divmod(ms, DAY_MS)
    date = _DATES.get(day)
    if date is None:
        date = _DATES[day] = format_ms(day * DAY_MS)[:11]
    s, milli = divmod(rest, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{date}{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


def seal_day(t: Ticket, policy: Policy, majors_ms: list[int]) -> int:
    """Index of the first daily major merge that seals the ticket (len: none yet)."""
    for i, at in enumerate(majors_ms):
        if policy.sealable(t, at):
            return i
    return len(majors_ms)


@dataclass
class Plan:
    """Which tickets end where: a cold run per span of seal days, and the hot rest."""

    runs: list[tuple[int, int]]  # [first, last] major index sealed into each cold run
    sizes: list[int]


def tiered(seal_bytes: list[int]) -> list[tuple[int, int]]:
    """The cold runs the store's tiered plan leaves after daily seals of these sizes."""
    runs: list[tuple[int, int, int]] = []  # first, last, raw bytes
    for day, size in enumerate(seal_bytes):
        if size:
            runs.append((day, day, size))
        while True:
            manifest = Manifest(tuple(_fake(f"{a}-{b}", s) for a, b, s in runs))
            merge = manifest.merge_plan()
            if not merge:
                break
            ids = {r.id for r in merge}
            chosen = [r for r in runs if f"{r[0]}-{r[1]}" in ids]
            rest = [r for r in runs if f"{r[0]}-{r[1]}" not in ids]
            first = min(r[0] for r in chosen)
            last = max(r[1] for r in chosen)
            runs = sorted([*rest, (first, last, sum(r[2] for r in chosen))])
    return [(a, b) for a, b, _ in runs]


def _fake(run_id: str, raw: int) -> ColdRun:
    return ColdRun(run_id, (ColdFile("", 0, 0, 0, b"", b"", 0, 0, raw),))


def raw_size(t: Ticket) -> int:
    return len(t.token) + len(t.events) + 17


async def write_history(store: TicketStore, model: Model, days: int, end_ms: int) -> TenantState:
    """Days [0, days) of the model as the store would hold them at `end_ms`."""
    policy = store.compactor.policy
    majors = [model.day0_ms + (d + 1) * DAY_MS for d in range(days - 1)] + [end_ms]
    seal_of: dict[int, np.ndarray] = {}
    seal_bytes = [0] * (len(majors) + 1)
    for day in range(days):  # pass 1: when each ticket is sealed, and the runs' sizes
        sealed_at = np.empty(model.tickets_per_day, dtype=np.int32)
        for n in range(model.tickets_per_day):
            t = model.ticket(day, n)
            sealed_at[n] = seal_day(t, policy, majors[day:]) + day
            seal_bytes[int(sealed_at[n])] += raw_size(t)
        seal_of[day] = sealed_at
    spans = tiered(seal_bytes[: len(majors)])
    runs = []
    for first, last in spans:  # pass 2: each run once, in token order
        wanted = _select(seal_of, partial(_between, first, last))
        runs.append(await _write_run(store, model, wanted))
    key = ""
    if runs:
        key = manifest_key(model.tenant)
        await store.io.put(key, Manifest(tuple(runs)).encode())
    hot = _select(seal_of, lambda s: s == len(majors))
    parts = await _write_hot(store, model, hot, seal_bytes[len(majors)])
    state = TenantState(1, dict.fromkeys(parts, 1), {}, key)
    await store.table.write(model.tenant, state)
    return state


Wanted = tuple[np.ndarray, np.ndarray]  # days, numbers


def _between(first: int, last: int, sealed: np.ndarray) -> np.ndarray:
    return (sealed >= first) & (sealed <= last)


def _select(seal_of: dict[int, np.ndarray], keep: Callable[[np.ndarray], np.ndarray]) -> Wanted:
    days, numbers = [], []
    for day, sealed in seal_of.items():
        n = np.flatnonzero(keep(sealed))
        days.append(np.full(len(n), day, dtype=np.int32))
        numbers.append(n.astype(np.int32))
    if not days:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return np.concatenate(days), np.concatenate(numbers)


def _sorted_by_token(model: Model, wanted: Wanted) -> Iterator[Ticket]:
    days, numbers = wanted
    ids = np.array(
        [
            int(ticket_id(model.seed, d, n), 16)
            for d, n in zip(days.tolist(), numbers.tolist(), strict=True)
        ],
        dtype=np.uint64,
    )
    for i in np.argsort(ids, kind="stable").tolist():
        yield model.ticket(int(days[i]), int(numbers[i]))


async def _write_run(store: TicketStore, model: Model, wanted: Wanted) -> ColdRun:
    run = new_batch_id()
    sink = FileSink(
        store.io, partial(cold_file_key, model.tenant, run), codec=ZLIB, file_bytes=COLD_FILE_BYTES
    )
    for t in _sorted_by_token(model, wanted):
        await sink.add(t)
    await sink.flush()
    return ColdRun(run, tuple(ColdFile.of(f.key, f.size, f.footer, f.stats) for f in sink.files))


async def _write_hot(store: TicketStore, model: Model, hot: Wanted, total: int) -> list[str]:
    """The hot tickets as the major files of as many partitions as the policy needs."""
    policy = store.compactor.policy
    bits = 0
    while total >> bits > policy.partition_bytes and 2**bits < policy.max_partitions:
        bits += 1
    parts = [ROOT + format(i, f"0{bits}b") if bits else ROOT for i in range(2**bits)]
    run = new_batch_id()
    sinks = {p: FileSink(store.io, partial(hot_file_key, model.tenant, p, "m", run)) for p in parts}
    state = TenantState(1, dict.fromkeys(parts, 1))
    for t in _sorted_by_token(model, hot):
        (part,) = state.route(token_hashes([t.token])[0])
        await sinks[part].add(t)
    for p, sink in sinks.items():
        await sink.flush()
        await store.io.put(epoch_marker_key(model.tenant, p, 1), b"")
    assert all(depth(p) == bits for p in parts)
    return parts
