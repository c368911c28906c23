"""Where every object lives in the bucket, and the two line formats.

Every key starts with `<stage>/<tenant>/`, so no key of one tenant can name
another tenant's data. Objects are gzip; their names are derived from the
batch they come from, so a retried stage rewrites the same key, except
`consolidated/` (and so `enriched/`), named `<batch>~<attempt>`: their content
depends on when the store was listed, so no attempt may overwrite another.

- `raw/`: NDJSON, one event per line, as the collector accepted it.
- `filtered/`, `consolidated/`: *event lines*,
  `<ticket_id as JSON>\\t<event as RFC 8785 JSON>\\n`, so that a stage can
  select a ticket's lines and compare events byte for byte without parsing.
- `store/`: the ticket store, runs of the same event lines grouped by ticket
  (`services/consolidator/runs.py`); `store/<tenant>/<bucket:04d>/` is the
  layout before version 2 of the store, migrated when a tenant is first seen.
- `quarantine/`: NDJSON `{"reason", "line"}` of what was refused.
- `enriched/`: NDJSON, one ticket's metrics per line.
- `parked/<tenant>/<stage>/`: NDJSON of tickets a stage could not process,
  each with its `reason` (shared/isolation.py); docs/operations.md says what to do.
"""

from __future__ import annotations

import gzip
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import orjson

from shared.errors import PoisonMessageError
from shared.events import TENANT_RE

RAW = "raw"
FILTERED = "filtered"
QUARANTINE = "quarantine"
STORE = "store"
CONSOLIDATED = "consolidated"
ENRICHED = "enriched"
PARKED = "parked"
ATTEMPT_SEP = "~"
EPOCH_MARK = "e-"


class BadKeyError(PoisonMessageError):
    """A key that does not follow the layout, or of another stage: never retried."""


def new_batch_id() -> str:
    """Time-ordered and unique across processes."""
    return f"{time.time_ns() // 1_000_000:013d}-{uuid.uuid4().hex[:12]}"


def batch_time(batch: str) -> datetime:
    """When the batch was written: the clock its checks must use to be repeatable."""
    stamp = batch.split("-", 1)[0]
    if not (stamp.isdigit() and len(stamp) == 13):
        raise BadKeyError(f"batch id without a time: {batch!r}")
    return datetime.fromtimestamp(int(stamp) / 1000, tz=UTC)


def attempt_name(batch: str) -> str:
    return f"{batch}{ATTEMPT_SEP}{uuid.uuid4().hex[:8]}"


def batch_of(name: str) -> str:
    """The batch an attempt name comes from."""
    return name.split(ATTEMPT_SEP, 1)[0]


def raw_key(tenant: str, batch: str) -> str:
    now = datetime.now(UTC)
    return f"{RAW}/{tenant}/{now:%Y/%m/%d/%H}/{batch}.ndjson.gz"


def stage_key(stage: str, tenant: str, batch: str) -> str:
    suffix = ".lines.gz" if stage in (FILTERED, CONSOLIDATED) else ".ndjson.gz"
    return f"{stage}/{tenant}/{batch}{suffix}"


def parked_key(tenant: str, stage: str, batch: str) -> str:
    return f"{PARKED}/{tenant}/{stage}/{batch}.ndjson.gz"


def store_root(tenant: str) -> str:
    """Everything of one tenant's ticket store (see services/consolidator/store.py)."""
    return f"{STORE}/{tenant}/"


def legacy_store_prefix(tenant: str, bucket: int) -> str:
    """The store layout before partitions could grow: fixed hash buckets."""
    return f"{STORE}/{tenant}/{bucket:04d}/"


def hot_prefix(tenant: str, partition: str) -> str:
    return f"{STORE}/{tenant}/h/{partition}/"


def delta_key(tenant: str, partition: str, batch: str) -> str:
    """Named by its batch: a retried batch rewrites the same object, identically."""
    return f"{hot_prefix(tenant, partition)}d-{batch}.run"


def hot_file_key(tenant: str, partition: str, kind: str, run: str, n: int) -> str:
    """File `n` of a merge's output `run`, of `kind` "r" (minor) or "m" (major): an
    output may be cut into several files, and compaction tiers the run, not each file."""
    return f"{hot_prefix(tenant, partition)}{kind}-{run}-{n:05d}.run"


def epoch_marker_key(tenant: str, partition: str, version: int) -> str:
    return f"{hot_prefix(tenant, partition)}{EPOCH_MARK}{version:012d}"


def cold_file_key(tenant: str, run: str, n: int) -> str:
    return f"{STORE}/{tenant}/c/{run}/{n:05d}.run"


def manifest_key(tenant: str) -> str:
    return f"{STORE}/{tenant}/m/{new_batch_id()}.json"


def parse_key(key: str) -> tuple[str, str, str]:
    """(stage, tenant, name) of any stage object; the name is a batch or attempt name."""
    parts = key.split("/")
    if len(parts) < 3 or not TENANT_RE.fullmatch(parts[1]):
        raise BadKeyError(f"not a telemetry object key: {key!r}")
    batch = parts[-1].split(".", 1)[0]
    if not batch:
        raise BadKeyError(f"no batch id in {key!r}")
    return parts[0], parts[1], batch


def expect_key(key: str, stage: str) -> tuple[str, str]:
    """(tenant, name) of a key that a handler of `stage` may process."""
    found, tenant, name = parse_key(key)
    if found != stage:
        raise BadKeyError(f"a {found} object sent to the {stage} stage: {key!r}")
    return tenant, name


def key_fields(key: str) -> dict[str, str]:
    """What a log line says about the object it is about: the key, and its
    tenant when the key follows the layout (a bad key is logged as it is)."""
    parts = key.split("/")
    if len(parts) >= 3 and TENANT_RE.fullmatch(parts[1]):
        return {"key": key, "tenant": parts[1]}
    return {"key": key}


def batch_lag_s(key: str) -> float | None:
    """Seconds since the batch an object comes from was accepted (its raw
    object's time), or None for a key that names no batch."""
    try:
        _, _, name = parse_key(key)
        return max(0.0, time.time() - batch_time(batch_of(name)).timestamp())
    except BadKeyError:
        return None


def ticket_token(ticket_id: str) -> bytes:
    return orjson.dumps(ticket_id)


def encode_lines(lines: Iterable[tuple[bytes, bytes]]) -> bytes:
    return gzip.compress(b"".join(t + b"\t" + e + b"\n" for t, e in lines), compresslevel=6)


def decode_lines(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    for line in gzip.decompress(data).splitlines():
        if line:
            token, _, event = line.partition(b"\t")
            yield token, event


def encode_ndjson(items: Iterable[object]) -> bytes:
    return gzip.compress(b"".join(orjson.dumps(i) + b"\n" for i in items), compresslevel=6)


def decode_ndjson_lines(data: bytes) -> list[bytes]:
    return [line for line in gzip.decompress(data).splitlines() if line.strip()]
