"""Reading an enriched batch, shared by both loaders."""

from __future__ import annotations

from typing import Any

import orjson

from shared.errors import PoisonMessageError
from shared.layout import decode_ndjson_lines


def batch_records(data: bytes, tenant: str) -> list[dict[str, Any]]:
    """The enriched records of an object of `tenant` (its key says whose it is:
    a record claiming another tenant is refused, never loaded there)."""
    records = [orjson.loads(line) for line in decode_ndjson_lines(data)]
    for r in records:
        if r.get("tenant_id") != tenant:
            raise PoisonMessageError(f"a record of {r.get('tenant_id')!r} in {tenant}'s object")
    return records
