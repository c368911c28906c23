"""Polling and event builders for the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from shared.aws import Aws
from telemetry.provision import ensure_table

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float = 30
) -> T:
    """Poll `probe` until `done` holds; fail with the last value seen."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if done(last):
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"condition not met within {timeout_s} s; last value: {last!r}")


def event(tenant: str, ticket: str, eid: str, etype: str, at: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": eid,
        "tenant_id": tenant,
        "ticket_id": ticket,
        "type": etype,
        "occurred_at": at,
        **fields,
    }


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called `name` in a Prometheus exposition."""
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


async def bucket_and_store_table(aws: Aws, bucket: str, table: str) -> None:
    """A bucket and a ticket-store table of a test's own (as provision makes them)."""
    with contextlib.suppress(aws.s3.exceptions.BucketAlreadyOwnedByYou):
        await aws.s3.create_bucket(Bucket=bucket)
    key = "key"
    await ensure_table(
        aws, table, [{"AttributeName": key, "KeyType": "HASH"}],
        [{"AttributeName": key, "AttributeType": "S"}],
    )  # fmt: skip
