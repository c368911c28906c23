"""Writing accepted events to Kinesis: batched, retried, all or 503."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient
    from types_aiobotocore_kinesis.type_defs import PutRecordsRequestEntryTypeDef

# One record carries many events (as the Kinesis Producer Library aggregates):
# fewer PUT units, fewer GetRecords, fewer objects downstream.
MAX_RECORD_BYTES = 900_000
MAX_RECORDS_PER_CALL = 500
MAX_CALL_BYTES = 4_500_000  # PutRecords takes 5 MiB, partition keys included
PARTITIONS_PER_TENANT = 16
ATTEMPTS = 4


class StreamUnavailableError(Exception):
    """The stream refused or throttled part of a batch after every retry."""


class StreamBusyError(StreamUnavailableError):
    """Too many bytes are already waiting for the stream: refused at once."""


def pack_records(tenant: str, lines: list[bytes]) -> list[PutRecordsRequestEntryTypeDef]:
    """NDJSON records of one tenant; the key spreads a tenant over shards."""
    records: list[PutRecordsRequestEntryTypeDef] = []
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > MAX_RECORD_BYTES:
            records.append(_record(tenant, chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        records.append(_record(tenant, chunk))
    return records


def _record(tenant: str, chunk: list[bytes]) -> PutRecordsRequestEntryTypeDef:
    return {
        "Data": b"\n".join(chunk) + b"\n",
        "PartitionKey": f"{tenant}/{secrets.randbelow(PARTITIONS_PER_TENANT)}",
    }


async def put_all(
    kinesis: KinesisClient, stream: str, records: list[PutRecordsRequestEntryTypeDef]
) -> None:
    """Return only when every record is in the stream; else StreamUnavailableError."""
    for start in range(0, len(records), MAX_RECORDS_PER_CALL):
        pending = records[start : start + MAX_RECORDS_PER_CALL]
        for attempt in range(ATTEMPTS):
            try:
                resp = await kinesis.put_records(StreamName=stream, Records=pending)
            except (ClientError, BotoCoreError) as exc:
                if attempt == ATTEMPTS - 1:
                    raise StreamUnavailableError(str(exc)) from exc
            else:
                results = resp["Records"]
                pending = [
                    r for r, res in zip(pending, results, strict=True) if res.get("ErrorCode")
                ]
                if not pending:
                    break
            await asyncio.sleep(0.05 * 2**attempt)
        else:
            raise StreamUnavailableError(f"{len(pending)} records still refused")


@dataclass
class _Request:
    tenant: str
    lines: list[bytes]
    done: asyncio.Future[None]


class StreamWriter:
    """Group commit: the requests that arrive within `linger_s` of each other
    share one `PutRecords`, and one tenant's events share records.

    A request returns when the call that carried its events succeeded, or
    raises StreamUnavailableError: its events were not all written (a retry is
    harmless, events are deduplicated downstream). Single-event requests at
    1,000/s become about 1/linger calls and a few hundred records per second
    instead of 1,000 of each, and Kinesis bills 25 KB payload units.
    """

    def __init__(
        self,
        kinesis: KinesisClient,
        stream: str,
        linger_s: float,
        *,
        max_pending_bytes: int = 64 * 1024 * 1024,
        call_timeout_s: float = 8.0,
        max_in_flight: int = 4,
    ) -> None:
        self._kinesis = kinesis
        self._stream = stream
        self._linger_s = linger_s
        self._max_pending_bytes = max_pending_bytes
        self._call_timeout_s = call_timeout_s
        self._bytes = 0  # of requests queued or in a call: bounded, so memory is
        self._pending: list[_Request] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._calls: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes of requests waiting for their call to the stream to succeed."""
        return self._bytes

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="stream-writer")

    async def write(self, tenant: str, lines: list[bytes]) -> None:
        if self._closing.is_set() or self._loop is None:
            raise StreamUnavailableError("the collector is stopping")
        size = _size(lines)
        if self._bytes and self._bytes + size > self._max_pending_bytes:
            raise StreamBusyError(f"{self._bytes} bytes already wait for the stream")
        done = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(tenant, lines, done))
        self._bytes += size
        self._wake.set()
        try:
            await done
        finally:  # answered, failed or given up by the client: no longer waiting
            self._bytes -= size

    async def close(self, timeout_s: float) -> None:
        """Write what is pending, wait for the calls in flight (bounded)."""
        self._closing.set()
        self._wake.set()
        if self._loop is not None:
            await asyncio.wait_for(self._loop, timeout_s)

    async def _run(self) -> None:
        backlog = False
        while not (self._closing.is_set() and not self._pending):
            await self._wake.wait()
            self._wake.clear()
            if not backlog:  # let the next requests join, unless we are stopping
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self._linger_s)
            await self._slots.acquire()
            # A request its client gave up on (503 at the deadline) is not written.
            self._pending = [r for r in self._pending if not r.done.done()]
            batch, self._pending = _split(self._pending)
            backlog = bool(self._pending)
            if backlog:
                self._wake.set()
            if not batch:
                self._slots.release()
                continue
            call = asyncio.create_task(self._call(batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
        if self._calls:
            await asyncio.wait(self._calls)

    async def _call(self, batch: list[_Request]) -> None:
        try:
            by_tenant: dict[str, list[bytes]] = {}
            for request in batch:
                by_tenant.setdefault(request.tenant, []).extend(request.lines)
            records = [r for t, lines in by_tenant.items() for r in pack_records(t, lines)]
            async with asyncio.timeout(self._call_timeout_s):  # a frozen stream frees the slot
                await put_all(self._kinesis, self._stream, records)
        except Exception as exc:  # every waiter must hear the outcome
            error = (
                exc
                if isinstance(exc, StreamUnavailableError)
                else StreamUnavailableError(str(exc) or type(exc).__name__)
            )
            for request in batch:
                if not request.done.done():
                    request.done.set_exception(error)
        else:
            for request in batch:
                if not request.done.done():
                    request.done.set_result(None)
        finally:
            self._slots.release()


def _size(lines: list[bytes]) -> int:
    return sum(len(line) + 1 for line in lines)


def _split(pending: list[_Request]) -> tuple[list[_Request], list[_Request]]:
    """As many requests as one call carries (the first always goes)."""
    size = count = 0
    for i, request in enumerate(pending):
        own = _size(request.lines)
        size += own
        count += 1 + own // MAX_RECORD_BYTES
        if i and (size > MAX_CALL_BYTES or count > MAX_RECORDS_PER_CALL):
            return pending[:i], pending[i:]
    return pending, []
