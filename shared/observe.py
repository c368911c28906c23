"""What every process shows on `/metrics` (Prometheus text, `prometheus_client`).

Each process serves it on its own port, `TELEMETRY_METRICS_PORT`, never on a
public one: the HTTP services' ports face clients, and what the metrics reveal
(tenants' traffic, queue names, AWS calls) is for operators only.

Instruments shared by many modules are defined here, once; what only one
object knows (its AWS request counts, its queue's depth) is a collector that
the process adds when it serves. Labels never carry a tenant, an id or a raw
path: their values come from small fixed sets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Seconds: from a fast handler or request to the handler timeout and beyond.
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Freshness: from the 5 s of a buffer to an hour of backlog.
LAG = (1, 2, 5, 10, 15, 20, 30, 45, 60, 120, 300, 600, 1800, 3600)

MESSAGES = Counter(
    "telemetry_messages",
    "Queue messages settled, by outcome: done, retried (later, with backoff), "
    "dead_lettered, unsettled (deleting or dead-lettering failed).",
    ["queue", "outcome"],
)
HANDLE_SECONDS = Histogram(
    "telemetry_handle_seconds",
    "Time to handle one unit of work: a queue message (every key it names, "
    "passing failures retried in place included), or a flush of the dumper.",
    ["stage", "queue"],
    buckets=SECONDS,
)
QUEUE_WAIT_SECONDS = Histogram(
    "telemetry_queue_wait_seconds",
    "From a message's SentTimestamp to its receive (a redelivered message keeps "
    "its first send time).",
    ["queue"],
    buckets=LAG,
)
BATCH_LAG_SECONDS = Histogram(
    "telemetry_batch_lag_seconds",
    "From a batch's acceptance (the time of its raw object, shared.layout.batch_time) "
    "until this stage finished with it; at the loader: acceptance to load.",
    ["stage", "queue"],
    buckets=LAG,
)
EVENTS = Counter(
    "telemetry_events",
    "Events posted to the collector: accepted; rejected one by one (reason: the "
    "error code); refused with their whole request (rate_limited, busy, stream_unavailable).",
    ["outcome", "reason"],
)
QUARANTINED = Counter(
    "telemetry_quarantined_lines",
    "Lines the filter refused, by reason; in_future means the collector accepted "
    "an event that the batch's own time refuses (clocks apart by more than the skew).",
    ["reason"],
)
PARKED = Counter(
    "telemetry_parked_tickets",
    "Tickets a stage could not process, kept under parked/<tenant>/<stage>/.",
    ["stage"],
)
HOT_ROWS_HELD_SECONDS = Histogram(
    "telemetry_loader_hot_rows_held_seconds",
    "From locking a tenant's hot rollup rows to the commit of a report loader batch: the "
    "part of a batch that loaders of one tenant do one at a time.",
    buckets=SECONDS,
)
FOLD_FAILURES = Counter(
    "telemetry_fold_failures",
    "Coarse rollup buckets whose fold failed with an error that is not passing "
    "(logged with the bucket); the folder goes on with the others.",
)
FOLD_OLDEST_AGE_SECONDS = Gauge(
    "telemetry_fold_oldest_unfolded_age_seconds",
    "Seconds since the end of the oldest closed coarse rollup bucket still unfolded, "
    "as the loader's last fold round saw it (0: none).",
)
HTTP_SECONDS = Histogram(
    "telemetry_http_request_seconds",
    "HTTP requests by route template (never the raw path), method and status.",
    ["route", "method", "status"],
    buckets=SECONDS,
)


class Exposition(Collector):
    """The process's instruments and its own collectors, as one scrape."""

    def __init__(self, collectors: Sequence[Collector]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        for collector in self.collectors:
            yield from collector.collect()


Refresh = Callable[[], Awaitable[None]]
REFRESH_TIMEOUT_S = 5.0


async def serve_metrics(
    collectors: Sequence[Collector], host: str, port: int, refresh: Refresh | None = None
) -> asyncio.Server:
    """A minimal `/metrics` server on the process's own event loop (no thread):
    it answers only while the loop does. `refresh` (bounded, failures logged)
    runs before each scrape, for values that cost a request to read."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created doubles every series
    exposition = Exposition(collectors)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if refresh is not None:
                try:
                    await asyncio.wait_for(refresh(), REFRESH_TIMEOUT_S)
                except Exception as exc:  # stale values beat no answer
                    log.warning("metrics refresh failed: %s", exc)
            body = generate_latest(exposition)
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)


async def serve_metrics_or_warn(
    collectors: Sequence[Collector], host: str, port: int, refresh: Refresh | None = None
) -> asyncio.Server | None:
    """Metrics are never worth a dead process: a port in use is only a warning."""
    if not port:
        return None
    try:
        return await serve_metrics(collectors, host, port, refresh)
    except OSError:
        log.warning("cannot serve /metrics on port %d", port, exc_info=True)
        return None
