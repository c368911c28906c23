"""Time buckets of the rollups and the decomposition of a range into them.

Two families of buckets:
- Epoch-aligned UTC buckets at seven levels: 15 minutes, 1 hour, then 1, 4,
  16, 64 and 256 days. Every zone offset in use is a multiple of 15 minutes,
  so a day (or hour, week, month) in any zone is an exact union of them.
- Calendar buckets of each report zone (`TELEMETRY_REPORT_ZONES`): its local
  days, Monday weeks and months. A day, week or month in such a zone is one
  bucket, whose percentiles are stored: a daily series over a year reads 365
  rows and merges no histogram.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

QUARTER_S = 900
LEVEL_SECONDS = (900, 3600, 86400, 4 * 86400, 16 * 86400, 64 * 86400, 256 * 86400)
UTC_DAY_LEVEL = 2
# Zones at UTC all year: their local days are the UTC day level's buckets, so
# they have no day level of their own (one level fewer to write per measurement).
UTC_NAMES = frozenset({
    "UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu",
    "GMT", "Etc/GMT", "GMT0", "Etc/GMT0", "GMT+0", "Etc/GMT+0", "GMT-0", "Etc/GMT-0",
    "Greenwich", "Etc/Greenwich",
})  # fmt: skip

Piece = tuple[int, int]  # (level, bucket start in epoch seconds)
CALENDAR_LEVELS = 1000  # levels from here on are report zones' days, weeks, months


@dataclass(frozen=True)
class Calendar:
    """A report zone. Its days, weeks and months are levels code, code+1, code+2:
    a stable function of the zone's name. Its rows are complete for instants
    from `since_s` on (the loader may have run without the zone before)."""

    name: str
    since_s: int = 0

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.name)

    @property
    def code(self) -> int:
        return CALENDAR_LEVELS + 3 * (zlib.crc32(self.name.encode()) % 10_000)

    @property
    def day_level(self) -> int:
        return UTC_DAY_LEVEL if self.name in UTC_NAMES else self.code


def calendars(names: tuple[str, ...]) -> tuple[Calendar, ...]:
    """The report zones, checked once at start."""
    found = tuple(Calendar(n) for n in names)
    if len({c.code for c in found}) != len(found):
        raise ValueError(f"report zones {names} share a level code; drop one")
    for c in found:
        c.zone  # noqa: B018 - an unknown zone fails at start, not in a loader batch
    return found


@lru_cache(maxsize=65_536)
def local_midnight(day: date, zone: ZoneInfo) -> int:
    """The instant a local day starts, in epoch seconds (the only definition used).
    Remembered: a year's daily series asks for each day four times, and zone
    arithmetic is most of a report's Python time."""
    return int(datetime.combine(day, time(), tzinfo=zone).timestamp())


@lru_cache(maxsize=65_536)
def calendar_buckets(name: str, code: int, quarter_s: int) -> tuple[Piece, ...]:
    """The zone's own buckets holding a quarter hour (all of it: a quarter never
    straddles a local midnight): its local week and month, and its local day
    unless the zone is UTC (the UTC day level holds those)."""
    zone = ZoneInfo(name)
    day = datetime.fromtimestamp(quarter_s, zone).date()
    week = day - timedelta(days=day.weekday())
    longer = (
        (code + 1, local_midnight(week, zone)),
        (code + 2, local_midnight(day.replace(day=1), zone)),
    )
    return longer if name in UTC_NAMES else ((code, local_midnight(day, zone)), *longer)


def span_s(level: int) -> int:
    """A level's bucket length (a calendar month counts as 31 days)."""
    if level < CALENDAR_LEVELS:
        return LEVEL_SECONDS[level]
    return (86400, 7 * 86400, 31 * 86400)[(level - CALENDAR_LEVELS) % 3]


def buckets_of(epoch_ms: int, cals: tuple[Calendar, ...] = ()) -> list[Piece]:
    """The bucket of every level holding this instant."""
    s = epoch_ms // 1000
    pieces = [(level, s - s % width) for level, width in enumerate(LEVEL_SECONDS)]
    for cal in cals:
        pieces.extend(calendar_buckets(cal.name, cal.code, s - s % QUARTER_S))
    return pieces


def decompose(start_s: int, end_s: int) -> list[Piece]:
    """[start_s, end_s) as the fewest aligned UTC buckets, greedily from the left."""
    if start_s % QUARTER_S or end_s % QUARTER_S:
        raise ValueError("range edges must be multiples of 15 minutes")
    pieces: list[Piece] = []
    t = start_s
    while t < end_s:
        level = max(lv for lv, w in enumerate(LEVEL_SECONDS) if t % w == 0 and t + w <= end_s)
        pieces.append((level, t))
        t += LEVEL_SECONDS[level]
    return pieces


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def decompose_local(cal: Calendar, start: date, end: date) -> list[Piece]:
    """The local days [start, end) of a report zone as months, weeks and days."""
    zone = cal.zone
    pieces: list[Piece] = []
    day = start
    while day < end:
        month_end = _next_month(day)
        week_end = day + timedelta(days=7)
        # a week may cross into the next month only if no whole month follows
        week_fits = week_end <= end and (week_end <= month_end or _next_month(month_end) > end)
        if day.day == 1 and month_end <= end:
            pieces.append((cal.code + 2, local_midnight(day, zone)))
            day = month_end
        elif day.weekday() == 0 and week_fits:
            pieces.append((cal.code + 1, local_midnight(day, zone)))
            day += timedelta(days=7)
        else:
            pieces.extend(_local_days(cal, day, day + timedelta(days=1)))
            day += timedelta(days=1)
    return pieces


def epoch_s(t: datetime) -> int:
    """Whole seconds: bucket edges are whole quarter hours."""
    return int(t.timestamp())


def instant(seconds: int) -> datetime:
    """An epoch second as an aware UTC datetime, as the database stores buckets."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def calendar_of(level: int, cals: tuple[Calendar, ...]) -> Calendar | None:
    """The report zone whose day, week or month `level` is (None: not one of `cals`)."""
    code = level - (level - CALENDAR_LEVELS) % 3
    return next((c for c in cals if c.code == code), None)


def _local_days(cal: Calendar, first: date, end: date) -> list[Piece]:
    """The zone's days [first, end) as day-level pieces (a skipped day is empty)."""
    zone = cal.zone
    out: list[Piece] = []
    day = first
    while day < end:
        begins = local_midnight(day, zone)
        if begins != local_midnight(day + timedelta(days=1), zone):
            out.append((cal.day_level, begins))
        day += timedelta(days=1)
    return out


def _zone_span(piece: Piece, cal: Calendar) -> tuple[int, date, date]:
    """(kind 0 day / 1 week / 2 month, first local day, day after the last)."""
    level, start = piece
    kind = (level - CALENDAR_LEVELS) % 3 if level >= CALENDAR_LEVELS else 0
    day = datetime.fromtimestamp(start, cal.zone).date()
    end = (day + timedelta(days=1), day + timedelta(days=7), _next_month(day))[kind]
    return kind, day, end


def end_of(piece: Piece, cals: tuple[Calendar, ...]) -> int | None:
    """When a bucket ends, in epoch seconds (None: a zone not in `cals`)."""
    level, start = piece
    if level < CALENDAR_LEVELS:
        return start + LEVEL_SECONDS[level]
    cal = calendar_of(level, cals)
    if cal is None:
        return None
    _, _, end = _zone_span(piece, cal)
    return local_midnight(end, cal.zone)


def children(piece: Piece, cals: tuple[Calendar, ...]) -> list[Piece]:
    """The buckets one level finer whose union a coarse bucket is: four (a 1 h or
    UTC 4^k-day bucket), a zone day's quarters, a zone week's or month's days."""
    level, start = piece
    if level < CALENDAR_LEVELS:
        width = LEVEL_SECONDS[level - 1]
        return [(level - 1, start + i * width) for i in range(LEVEL_SECONDS[level] // width)]
    cal = calendar_of(level, cals)
    if cal is None:
        raise ValueError(f"level {level} is not a level of the report zones {cals}")
    kind, day, end = _zone_span(piece, cal)
    if kind == 0:
        return [(0, t) for t in range(start, local_midnight(end, cal.zone), QUARTER_S)]
    return _local_days(cal, day, end)


def ancestors(quarter_s: int, cals: tuple[Calendar, ...]) -> list[Piece]:
    """Every coarse bucket (all levels but the quarter hours) holding a quarter."""
    return buckets_of(quarter_s * 1000, cals)[1:]
