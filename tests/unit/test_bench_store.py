"""The store benchmark's history generator writes canonical events and the store's summaries."""

from __future__ import annotations

import orjson

from bench.store_history import DAY_MS, Model, tiered
from services.consolidator.manifest import COLD_BASE_BYTES, COLD_FANOUT, size_class
from services.consolidator.runs import tickets_of
from shared.events import canonical

MODEL = Model("acme", 7, 500, 1_790_000_000_000 // DAY_MS * DAY_MS)


def test_generated_lines_are_canonical_events_with_the_stores_summary() -> None:
    events = 0
    for day, n in [(0, 0), (3, 17), (40, 499), *((9, k) for k in range(200))]:
        ticket = MODEL.ticket(day, n)
        lines = ticket.lines()
        events += len(lines)
        for line in lines:
            assert canonical(orjson.loads(line)) == line
        assert tickets_of([(ticket.token, line) for line in lines]) == [ticket]
        assert orjson.loads(ticket.token) == orjson.loads(lines[0])["ticket_id"]
    assert 9 < events / 203 < 15  # about 12 events a ticket


def test_tickets_are_a_pure_function_of_their_day_and_number() -> None:
    assert MODEL.ticket(5, 3) == MODEL.ticket(5, 3)
    assert MODEL.ticket(5, 3) != MODEL.ticket(5, 4)
    assert len({MODEL.ticket(5, k).token for k in range(500)}) == 500


def test_tiered_runs_cover_every_seal_once_and_leave_no_full_class() -> None:
    seals = [3 * COLD_BASE_BYTES // 10] * 300
    runs = tiered(seals)
    covered = [d for a, b in runs for d in range(a, b + 1)]
    assert covered == list(range(300))
    sizes = [sum(seals[a : b + 1]) for a, b in runs]
    classes = [size_class(s, COLD_BASE_BYTES, COLD_FANOUT) for s in sizes]
    assert all(classes.count(c) < COLD_FANOUT for c in set(classes))
    assert len(runs) < 20
