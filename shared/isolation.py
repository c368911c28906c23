"""One bad item never holds back the others (principle 7).

A batch is first run whole, which is the cheap common case. When it fails for
a reason of its own (not the infrastructure's: those are retried whole), it is
split in halves until every failing item stands alone; the rest is done. k bad
items among n cost about 2·k·log2(n) extra runs. What could not be done is
parked with its reason where an operator looks (`parked/` in the bucket).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from shared.errors import is_transient
from shared.layout import encode_ndjson, parked_key
from shared.objects import put_bytes

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger(__name__)
T = TypeVar("T")


def reason_of(exc: BaseException) -> str:
    """One line an operator can read (a database error without its SQL text)."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {first}"[:500]


async def bisect_failures(
    items: Sequence[T], run: Callable[[Sequence[T]], Awaitable[None]]
) -> list[tuple[T, BaseException]]:
    """Run `items`, splitting on failure; returns the items that failed alone.

    A transient failure is raised as is: the whole message is retried later, and
    `run` must be idempotent for the part that already succeeded.
    """
    if not items:
        return []
    try:
        await run(items)
        return []
    except Exception as exc:
        if is_transient(exc):
            raise
        if len(items) == 1:
            return [(items[0], exc)]
    half = len(items) // 2
    return [*await bisect_failures(items[:half], run), *await bisect_failures(items[half:], run)]


async def park(
    s3: S3Client, bucket: str, stage: str, tenant: str, name: str, items: list[dict[str, Any]]
) -> None:
    """Keep what a stage could not process, each item with its `reason`.

    The key is a function of the stage and the batch, so a redelivery rewrites it.
    """
    key = parked_key(tenant, stage, name)
    await put_bytes(s3, bucket, key, encode_ndjson(items))
    for item in items:
        log.error(
            "parked ticket %r at %s: %s", item.get("ticket_id"), key, item.get("reason"),
            extra={"tenant": tenant, "key": key},
        )  # fmt: skip
