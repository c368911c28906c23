"""The report benchmark's synthetic rollups are the loader's rollups of the same tickets."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from bench.history import DIMS, fold_states, generate, laid_out, measures, measures_of, rows
from services.loader.rollups import Key, contribution
from shared.rollups import Rollup, row_values
from shared.timebuckets import ancestors, calendars, end_of, epoch_s

CALS = calendars(("UTC", "America/Sao_Paulo", "Asia/Kathmandu"))


def test_numpy_rollups_equal_the_loaders_contribution() -> None:
    h = generate(tickets=300, days=40, end=datetime(2026, 11, 1, tzinfo=UTC), seed=3)
    assert h.abandoned.any() and (h.group2 >= 0).any()
    expected: dict[Key, Rollup] = {}
    for i in range(h.n):
        contribution(measures_of(h, i), 1, expected, CALS)
    m = measures(h)
    got = {
        (dim, level, epoch_s(bucket), value): (orjson.loads(cells), hists, orjson.loads(pcts))
        for d in DIMS
        for dim, level, bucket, value, cells, hists, pcts in rows(h, m, d, CALS)
    }
    want = {k: row_values(v.pruned()) for k, v in expected.items()}
    assert got == {k: (v["cells"], v["hists"], v["pcts"]) for k, v in want.items()}


def test_the_history_is_laid_out_as_the_loader_and_its_folder_leave_it() -> None:
    """Quarter rows (the loader's), coarse rows of closed buckets only (the
    folder's sums of them), and a fold state for every coarse bucket with data."""
    end = datetime(2026, 11, 1, tzinfo=UTC)
    h = generate(tickets=200, days=20, end=end, seed=5)
    before = epoch_s(end) - 3 * 86400  # the last days, weeks, months and more are open
    quarters: dict[Key, Rollup] = {}
    every: dict[Key, Rollup] = {}
    for i in range(h.n):
        contribution(measures_of(h, i), 1, quarters, CALS, finest=True)
        contribution(measures_of(h, i), 1, every, CALS)
    pieces = {p for _, level, b, _ in quarters for p in ancestors(b, CALS)}
    want_states = {(p, end_of(p, CALS) <= before) for p in pieces}  # type: ignore[operator]
    assert any(not folded for _, folded in want_states)
    m = measures(h)
    got_states = {((lv, epoch_s(b)), folded) for lv, b, folded in fold_states(m, CALS, before)}
    assert got_states == want_states
    kept = {k for k in every if k[1] == 0 or ((k[1], k[2]), True) in want_states}
    assert {k for k in quarters} <= kept
    got = {
        (dim, level, epoch_s(bucket), value)
        for d in DIMS
        for dim, level, bucket, value, *_ in laid_out(rows(h, m, d, CALS), CALS, before)
    }
    assert got == kept
