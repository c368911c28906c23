"""The report benchmark's synthetic rollups are the loader's rollups of the same tickets."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from bench.history import DIMS, generate, measures, measures_of, rows
from services.loader.rollups import Key, contribution
from shared.rollups import Rollup, row_values
from shared.timebuckets import calendars, epoch_s

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
