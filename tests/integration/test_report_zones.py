"""Report zones are used only where the loader has written their rows."""

from __future__ import annotations

from datetime import UTC, datetime

from services.loader.reports import register_zones
from services.report.zones import ReportZones
from shared.db import make_engine
from shared.settings import Settings
from shared.timebuckets import calendars


async def test_a_zone_counts_from_when_the_loader_writes_it(provisioned: Settings) -> None:
    engine = make_engine(provisioned.require_database_url())
    defaults = provisioned.report_calendars()
    tokyo = calendars(("Asia/Tokyo",))
    try:
        before = datetime.now(UTC).timestamp()
        await register_zones(engine, defaults + tokyo)
        await register_zones(engine, defaults + tokyo)  # a second loader changes nothing
        known = await ReportZones(engine, defaults + tokyo).current()
        assert set(known) == {c.name for c in defaults + tokyo}
        async with engine.connect() as conn:
            loaded = (await conn.exec_driver_sql("SELECT count(*) FROM tickets")).scalar()
        since = known["Asia/Tokyo"].since_s
        assert since == 0 if loaded == 0 else since >= int(before)
        assert set(await ReportZones(engine, tokyo).current()) == {"Asia/Tokyo"}  # ours only

        await register_zones(engine, defaults)  # Tokyo dropped: its rows stop
        assert "Asia/Tokyo" not in await ReportZones(engine, defaults + tokyo).current()
    finally:
        await register_zones(engine, defaults)
        await engine.dispose()
