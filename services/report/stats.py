"""Report arithmetic shared by every endpoint: stats objects, ranges, CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.histogram import rank
from shared.http import ApiError
from shared.timebuckets import Calendar, decompose, epoch_s, instant, local_midnight

PERCENTILES = (("p50_ms", 50), ("p90_ms", 90), ("p95_ms", 95))
PERCENTILE_KEYS = tuple(k for k, _ in PERCENTILES)
NO_STATS: dict[str, Any] = {"count": 0, "avg_ms": None, **dict.fromkeys(PERCENTILE_KEYS)}


def nearest_rank(sorted_values: Sequence[int], percent: int) -> int:
    """The value of rank ceil(p*n), 1-based (SPEC §2)."""
    return sorted_values[rank(len(sorted_values), percent) - 1]


def stats(values: Sequence[int]) -> dict[str, Any]:
    if not values:
        return NO_STATS.copy()
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "avg_ms": sum(ordered) / len(ordered),
        **{k: nearest_rank(ordered, p) for k, p in PERCENTILES},
    }


def merged_stats(cell: list[int] | None, values: list[int | None]) -> dict[str, Any]:
    """A stats object from a rollup cell `[count, sum_ms]` and its p50/p90/p95
    (five per point of a series: kept to plain dict building)."""
    if cell is None or cell[0] <= 0:
        return NO_STATS.copy()
    out: dict[str, Any] = {"count": cell[0], "avg_ms": cell[1] / cell[0]}
    out.update(zip(PERCENTILE_KEYS, values, strict=True))
    return out


def ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ApiError(400, "invalid_tz", f"unknown time zone {tz!r}") from exc


def parse_date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ApiError(400, "invalid_date", f"{name} must be YYYY-MM-DD") from exc


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return instant(local_midnight(day, tz))


def day_range(start: date, end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[midnight of `start`, midnight after `end`) in `tz`, as UTC instants."""
    if start > end:
        raise ApiError(400, "invalid_range", "from is after to")
    try:
        return _midnight(start, tz), _midnight(end + timedelta(days=1), tz)
    except (OverflowError, ValueError) as exc:
        raise ApiError(400, "invalid_date", "date out of range") from exc


GRANULARITIES = ("15m", "30m", "hour", "day", "week", "month")
MAX_POINTS = 20_000
# Rollup buckets one timeseries may read. Each point is read as a few aligned
# buckets (services/report/queries.py): one per local day, week or month of a
# report zone, up to about 27 per day in other zones (quarter hours and hours
# around the offset). Building them costs about 1 µs each before any SQL, and
# the SQL reads as many rows: 533,000 buckets (a daily series of 54 years in
# Asia/Kolkata) cost 1.5 s of CPU.
MAX_BUCKETS = 50_000
QUARTER_HOUR = timedelta(minutes=15)  # every offset in use is a multiple of it
# Points shorter than a day start at these local minutes (multiples of): the
# 15-minute rollups (level 0) make them exact in every zone.
SUB_DAY = {"15m": 15, "30m": 30, "hour": 60}


def intervals(
    start: date, end: date, tz: ZoneInfo, granularity: str
) -> tuple[list[datetime], list[datetime]]:
    """(labels, bounds) of a timeseries in `tz`.

    Labels are the natural starts of the quarter and half hours, hours, days,
    weeks (Monday) or months that meet the range; bounds clip the first and
    the last to the range, so the points always add up to the summary of the
    range.
    """
    lo, hi = day_range(start, end, tz)
    per_day = {"15m": 100, "30m": 50, "hour": 25, "day": 1, "week": 1 / 7, "month": 1 / 28}
    if granularity not in per_day:
        raise ApiError(400, "invalid_granularity", f"granularity must be one of {GRANULARITIES}")
    if ((end - start).days + 1) * per_day[granularity] > MAX_POINTS + 2:
        raise ApiError(
            400, "too_many_points", f"at most {MAX_POINTS} points; use a coarser granularity"
        )
    if granularity in SUB_DAY:
        labels = []
        t = lo
        while t < hi:
            if t.astimezone(tz).minute % SUB_DAY[granularity] == 0:
                labels.append(t)
            t += QUARTER_HOUR
    else:
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        if granularity == "day":
            firsts = days
        elif granularity == "week":
            firsts = [start - timedelta(days=start.weekday())] + [
                d for d in days[1:] if d.weekday() == 0
            ]
        elif granularity == "month":
            firsts = [start.replace(day=1)] + [d for d in days[1:] if d.day == 1]
        else:
            raise ApiError(
                400, "invalid_granularity", f"granularity must be one of {GRANULARITIES}"
            )
        labels = [_midnight(d, tz) for d in firsts]
    if len(labels) > MAX_POINTS:
        raise ApiError(
            400, "too_many_points", f"at most {MAX_POINTS} points; use a coarser granularity"
        )
    return labels, [lo, *labels[1:], hi]


def check_buckets(bounds: list[datetime], cal: Calendar | None, granularity: str) -> None:
    """400 when the intervals of `bounds` need more than MAX_BUCKETS rollup buckets,
    counted as services/report/queries.py decomposes them. In a report zone (from
    where its rows are complete) a day, week or month series reads one bucket per
    point, a clipped first or last week or month a few more; elsewhere each point
    is decomposed into UTC buckets, and counting stops at the cap, so a refusal
    costs what the cap allows, not what was asked."""
    local = cal is not None and granularity not in SUB_DAY and epoch_s(bounds[0]) >= cal.since_s
    total = len(bounds) - 1 + 2 * 10 if local else 0
    if not local:
        for lo, hi in pairwise(bounds):
            try:
                total += len(decompose(epoch_s(lo), epoch_s(hi)))
            except (ValueError, OverflowError):  # the query refuses such a range itself
                total += 1
            if total > MAX_BUCKETS:
                break
    if total > MAX_BUCKETS:
        raise ApiError(
            400, "too_many_buckets",
            f"this series reads more than {MAX_BUCKETS} rollup buckets; use a coarser"
            " granularity, a shorter range, or a report zone (TELEMETRY_REPORT_ZONES)",
        )  # fmt: skip


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP
# "CSV injection"); ids come from producers, so such a string cell gets a leading
# quote. Numbers are never touched: -3 stays a number.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(rows: list[dict[str, Any]]) -> str:
    flat = [{k: cell(v) for k, v in flatten(r).items()} for r in rows]
    columns: list[str] = []
    for r in flat:
        columns.extend(c for c in r if c not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()
