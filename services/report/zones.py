"""Which report zones the reports may read calendar rows of, and from when.

A zone counts only when both this service and the loader have it (the loader
records it in `report_zones`, with the instant from which its rows are
complete); the record is re-read every minute, so a zone the loader starts
writing is used without a restart.
"""

from __future__ import annotations

import time
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import report_zones
from shared.timebuckets import Calendar

REFRESH_S = 60.0


class ReportZones:
    def __init__(self, engine: AsyncEngine, configured: tuple[Calendar, ...]) -> None:
        self.engine = engine
        self.configured = {c.name: c for c in configured}
        self.known: dict[str, Calendar] = {}
        self.read_at = float("-inf")

    async def current(self) -> dict[str, Calendar]:
        if self.configured and time.monotonic() - self.read_at > REFRESH_S:
            async with self.engine.connect() as conn:
                rows = await conn.execute(select(report_zones.c.name, report_zones.c.since))
            self.known = {
                name: replace(self.configured[name], since_s=int(since.timestamp()))
                for name, since in rows
                if name in self.configured
            }
            self.read_at = time.monotonic()
        return self.known
