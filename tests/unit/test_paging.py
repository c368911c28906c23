"""Keyset paging of the groups and agents reports, and the 15/30-minute series."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from services.report.paging import page
from services.report.stats import intervals
from shared.http import ApiError


def rows() -> list[dict[str, object]]:
    return [
        {"group_id": g, "stints": s, "queue_time": {"avg_ms": a}}
        for g, s, a in (("b", 3, 10.0), ("a", 3, None), ("c", 1, 5.0), ("d", 7, None))
    ]


@pytest.mark.parametrize("sort", ["group_id", "-stints", "stints", "-queue_time.avg_ms"])
@pytest.mark.parametrize("limit", [1, 2, 3, 10])
def test_pages_hold_every_row_once_in_order(sort: str, limit: int) -> None:
    whole, end = page(rows(), "group_id", sort, None, None)
    assert end is None and len(whole) == 4
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        shown, cursor = page(rows(), "group_id", sort, limit, cursor)
        assert len(shown) <= limit
        seen.extend(shown)
        if cursor is None:
            break
    assert seen == whole


def test_orders_ties_by_id_and_nulls_first() -> None:
    ids = [r["group_id"] for r in page(rows(), "group_id", "-stints", None, None)[0]]
    assert ids == ["d", "b", "a", "c"]  # descending: ties by id descending too
    ids = [r["group_id"] for r in page(rows(), "group_id", "queue_time.avg_ms", None, None)[0]]
    assert ids == ["a", "d", "c", "b"]


def test_a_cursor_of_another_sort_or_forged_is_a_400() -> None:
    _, cursor = page(rows(), "group_id", "stints", 1, None)
    assert cursor is not None
    for bad_sort, bad in (("-stints", cursor), ("stints", "!!"), ("stints", "WzFd")):
        with pytest.raises(ApiError) as err:
            page(rows(), "group_id", bad_sort, 1, bad)
        assert err.value.status == 400


@pytest.mark.parametrize(("granularity", "per_day"), [("15m", 96), ("30m", 48)])
def test_sub_hour_points_start_on_local_quarters(granularity: str, per_day: int) -> None:
    tz = ZoneInfo("Asia/Kathmandu")  # +05:45
    labels, bounds = intervals(date(2026, 3, 1), date(2026, 3, 2), tz, granularity)
    assert len(labels) == 2 * per_day and len(bounds) == len(labels) + 1
    step = 15 if granularity == "15m" else 30
    assert all(label.astimezone(tz).minute % step == 0 for label in labels)
