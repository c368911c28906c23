"""PostgreSQL's own I/O counters, read before and after a measured window.

The cluster serves one database in a benchmark, so its counters are the
stages' (the loaders write, the report service and the probes read). Bytes
read: blocks read into shared buffers (from the OS cache or the disk) and
blocks found there, from `pg_stat_io` (PostgreSQL 16) and `pg_stat_database`;
bytes written: blocks written and extended, and the WAL's bytes. Backends
flush their counters at most once a second, and idle ones within ten: read
after the work has drained.
"""

from __future__ import annotations

import asyncpg

from shared.db import async_url

IO_SQL = """
SELECT coalesce(sum(reads * op_bytes), 0)::bigint AS read_bytes,
       coalesce(sum(hits * op_bytes), 0)::bigint AS hit_bytes,
       coalesce(sum((writes + extends) * op_bytes), 0)::bigint AS written_bytes
FROM pg_stat_io
"""


def dsn(url: str) -> str:
    return async_url(url).replace("postgresql+asyncpg://", "postgresql://")


async def pg_io(database_url: str) -> dict[str, int]:
    """Cumulative bytes: read (into buffers), hit (in buffers), written, WAL; rows
    changed; and the bytes each table's blocks were read or hit (`table NAME`)."""
    conn = await asyncpg.connect(dsn(database_url))
    try:
        io = await conn.fetchrow(IO_SQL)
        wal = await conn.fetchval("SELECT wal_bytes::bigint FROM pg_stat_wal")
        tables = await conn.fetch(
            "SELECT relname, (coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0)"
            " + coalesce(idx_blks_read, 0) + coalesce(idx_blks_hit, 0)"
            " + coalesce(toast_blks_read, 0) + coalesce(toast_blks_hit, 0)"
            " + coalesce(tidx_blks_read, 0) + coalesce(tidx_blks_hit, 0))::bigint"
            " * current_setting('block_size')::bigint AS bytes FROM pg_statio_user_tables"
        )
        db = await conn.fetchrow(
            "SELECT tup_inserted + tup_updated + tup_deleted AS rows_changed, xact_commit"
            " FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return {**{k: int(v) for k, v in io.items()}, "wal_bytes": int(wal),
            **{k: int(v) for k, v in db.items()},
            **{f"table {t['relname']}": int(t["bytes"]) for t in tables}}  # fmt: skip
