"""Bad items are isolated, passing failures are retried: the two kinds told apart."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Sequence

import orjson
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from services.enricher.handler import enrich
from shared.errors import ServiceUnavailableError, is_transient
from shared.events import canonical
from shared.isolation import bisect_failures, reason_of


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"state {sqlstate}")
        self.sqlstate = sqlstate


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Op",
    )


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (TimeoutError(), True),
        (ConnectionRefusedError(), True),
        (EndpointConnectionError(endpoint_url="http://x"), True),
        (ReadTimeoutError(endpoint_url="http://x"), True),
        (_client_error("ThrottlingException"), True),
        (_client_error("SlowDown", 503), True),
        (_client_error("Whatever", 500), True),
        (_client_error("ValidationException"), False),
        (_client_error("ConditionalCheckFailedException"), False),
        (_PgError("08006"), True),  # connection failure
        (_PgError("40P01"), True),  # deadlock
        (_PgError("57014"), True),  # statement timeout
        (_PgError("22021"), False),  # a byte sequence the encoding cannot hold
        (_PgError("23505"), False),
        (ValueError("year 0 is out of range"), False),
        (gzip.BadGzipFile("not gzip"), False),
        (FileNotFoundError(2, "No such file or directory"), True),  # PostgreSQL's socket, gone
        (FileNotFoundError(2, "No such file or directory", "/some/file"), False),
        (FileNotFoundError("no such report"), False),  # raised by code: no errno
        (ServiceUnavailableError(), True),
        (ExceptionGroup("g", [TimeoutError(), ConnectionResetError()]), True),
        (ExceptionGroup("g", [TimeoutError(), ValueError()]), False),
    ],
)
def test_passing_failures_are_told_from_the_work_s_own(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_a_wrapped_cause_counts() -> None:
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_bisection_isolates_exactly_the_bad_items() -> None:
    bad = {7, 42, 43}
    done: list[int] = []

    async def run(items: Sequence[int]) -> None:
        if bad & set(items):
            raise ValueError(f"bad among {len(items)}")
        done.extend(items)

    failed = asyncio.run(bisect_failures(list(range(100)), run))
    assert sorted(item for item, _ in failed) == sorted(bad)
    assert sorted(done) == sorted(set(range(100)) - bad)  # each good item once


def test_bisection_raises_a_passing_failure_for_a_retry() -> None:
    async def run(items: Sequence[int]) -> None:
        raise ConnectionResetError("database restarting")

    with pytest.raises(ConnectionResetError):
        asyncio.run(bisect_failures([1, 2, 3], run))


def test_reason_is_one_readable_line() -> None:
    assert reason_of(ValueError("year 0 is out of range\nmore")) == (
        "ValueError: year 0 is out of range"
    )


def test_the_enricher_parks_a_ticket_it_cannot_evaluate_and_keeps_the_rest() -> None:
    good = {"event_id": "e", "tenant_id": "acme", "ticket_id": "t1", "type": "ticket_created",
            "occurred_at": "2026-11-20T10:00:00.000Z", "channel": "webchat",
            "group_id": "g"}  # fmt: skip
    lines = [(orjson.dumps("t1"), canonical(good)), (orjson.dumps("t2"), b"{not json")]
    records, failed = enrich("acme", lines, set(lines))
    assert [r["ticket_id"] for r in records] == ["t1"]
    assert [t for t, _ in failed] == ["t2"]
