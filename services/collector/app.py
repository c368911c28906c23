"""Collector: `POST /v1/events` validates and writes events to the stream (SPEC §3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response

from services.collector.limits import MAX_NODES, RateLimiter, json_nodes
from services.collector.models import Accepted, batch_schema
from services.collector.stream import StreamBusyError, StreamUnavailableError, StreamWriter
from shared.auth import ApiKey, KeyStore
from shared.aws import Aws, open_aws
from shared.events import InvalidEventError, Rejection, canonical, validate
from shared.http import (
    RETRY_AFTER_S,
    ApiError,
    ApiKeyDep,
    GuardMiddleware,
    HttpMetricsMiddleware,
    Readiness,
    install_browser_support,
    install_error_handlers,
    json_response,
    metrics_server,
    service_router,
)
from shared.observe import EVENTS
from shared.openapi import Ready, errors, install_openapi
from shared.settings import Settings

MAX_BODY = 1024 * 1024
MAX_EVENTS = 500
OFF_LOOP_BYTES = 64 * 1024

router = APIRouter()


def _writer(request: Request) -> StreamWriter:
    writer: StreamWriter = request.app.state.writer
    return writer


WriterDep = Annotated[StreamWriter, Depends(_writer)]


def parse_batch(body: bytes) -> list[Any]:
    """The events of a body, once it is known to be a bounded JSON array."""
    if json_nodes(body) > MAX_NODES:
        raise ApiError(413, "too_complex", f"body holds more than {MAX_NODES} JSON values")
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"body is not JSON: {exc}") from exc
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        raise ApiError(
            400, "invalid_batch", f"body must be a JSON array of 1 to {MAX_EVENTS} events"
        )
    return events


def check_batch(body: bytes, api_key: ApiKey, now: datetime) -> tuple[list[bytes], list[Rejection]]:
    """Split a request body into accepted NDJSON lines and per-event rejections."""
    return check_events(parse_batch(body), api_key, now)


def check_events(
    events: list[Any], api_key: ApiKey, now: datetime
) -> tuple[list[bytes], list[Rejection]]:
    accepted: list[bytes] = []
    rejected: list[Rejection] = []
    for i, raw in enumerate(events):
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        try:
            event = validate(raw, now)
            if event["tenant_id"] != api_key.tenant_id:
                raise InvalidEventError("tenant_mismatch", "tenant_id is not the key's tenant")
            canonical(event)  # what the filter will need: refuse now, not after the 202
        except InvalidEventError as exc:
            rid = event_id if isinstance(event_id, str) else None
            rejected.append(Rejection(i, rid, exc.code, exc.message))
            continue
        accepted.append(orjson.dumps(event))
    return accepted, rejected


BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A JSON array of 1 to 500 events, at most 1 MiB. Each invalid event is"
        " rejected alone (listed in the answer); the others are accepted.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}},
    }
}


@router.post(
    "/v1/events", status_code=202, tags=["events"], operation_id="postEvents",
    response_model=Accepted, openapi_extra=BODY_DOC,
    responses={202: {"description": "Accepted"}, **errors(400, 401, 403, 413, 429)},
)  # fmt: skip
async def post_events(request: Request, api_key: ApiKeyDep, writer: WriterDep) -> Response:
    """Validate a batch of events and write the valid ones durably to the stream."""
    api_key.require(None, "ingest")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, "too_large", "body exceeds 1 MiB")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():  # bounded even without Content-Length
        size += len(part)
        if size > MAX_BODY:
            raise ApiError(413, "too_large", "body exceeds 1 MiB")
        parts.append(part)
    body = b"".join(parts)
    # A large body is parsed and validated off the event loop: other requests
    # keep being answered while it is checked (bounded by MAX_NODES anyway).
    off_loop = len(body) > OFF_LOOP_BYTES
    events = await asyncio.to_thread(parse_batch, body) if off_loop else parse_batch(body)
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.take(api_key.key_id, len(events))
    if wait:
        EVENTS.labels("refused", "rate_limited").inc(len(events))
        raise ApiError(
            429, "rate_limited",
            f"this key may send {limiter.rate:g} events/s (bursts of {limiter.burst});"
            f" retry the whole batch in {wait} s", {"Retry-After": str(wait)},
        )  # fmt: skip
    now = datetime.now(UTC)
    accepted, rejected = (
        await asyncio.to_thread(check_events, events, api_key, now)
        if off_loop
        else check_events(events, api_key, now)
    )
    for r in rejected:
        EVENTS.labels("rejected", r.code).inc()
    if accepted:
        try:
            await writer.write(api_key.tenant_id, accepted)
        except StreamBusyError as exc:
            EVENTS.labels("refused", "busy").inc(len(accepted))
            raise ApiError(
                503, "busy", f"retry the whole batch: {exc}", {"Retry-After": str(RETRY_AFTER_S)}
            ) from exc
        except StreamUnavailableError as exc:
            EVENTS.labels("refused", "stream_unavailable").inc(len(accepted))
            raise ApiError(
                503, "stream_unavailable", f"retry the whole batch: {exc}", {"Retry-After": "1"}
            ) from exc
        EVENTS.labels("accepted", "").inc(len(accepted))
    answer = {
        "accepted": len(accepted),
        "rejected": [
            {"index": r.index, "event_id": r.event_id, "code": r.code, "message": r.message}
            for r in rejected
        ],
    }
    return json_response(answer, 202)


@router.get(
    "/readyz", tags=["health"], operation_id="getReady", response_model=Ready, responses=errors()
)
async def readyz(request: Request) -> Response:
    """Ready when the stream and the key table answer (checked at most every few s)."""
    readiness: Readiness = request.app.state.readiness
    return await readiness.response()


def readiness(aws: Aws, settings: Settings) -> Readiness:
    async def stream() -> None:
        await aws.kinesis.describe_stream_summary(StreamName=settings.stream)

    async def keys() -> None:
        await aws.dynamodb.describe_table(TableName=settings.keys_table)

    return Readiness({"stream": stream, "keys": keys}, settings.readyz_cache_s)


TAGS = [
    {"name": "events", "description": "Ingest: batches of events (SPEC §1)"},
    {"name": "health", "description": "Probes (no key needed)"},
]
DESCRIPTION = (
    "The ingest API of SPEC §3. Every request carries `Authorization: Bearer <api key>`"
    " with the `ingest` scope. A 503 or 429 means: retry the whole batch after"
    " `Retry-After`; a 202 means every accepted event is durably stored."
)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_aws(settings, interactive=True) as aws:
            app.state.settings = settings
            app.state.aws = aws
            app.state.keys = KeyStore(aws.dynamodb, settings.keys_table)
            app.state.limiter = RateLimiter(
                settings.collector_rate_limit, settings.collector_rate_burst
            )
            app.state.readiness = readiness(aws, settings)
            writer = StreamWriter(
                aws.kinesis,
                settings.stream,
                settings.collector_linger_ms / 1000,
                max_pending_bytes=settings.collector_max_pending_bytes,
                call_timeout_s=settings.request_timeout_s,
            )
            writer.start()
            app.state.writer = writer
            metrics = await metrics_server(aws, settings)
            try:
                yield
            finally:  # uvicorn has answered every request by now
                await writer.close(settings.drain_timeout_s)
                await app.state.keys.close()
                if metrics is not None:
                    metrics.close()

    app = FastAPI(title="Telemetry collector", version="1", lifespan=lifespan, openapi_tags=TAGS)
    app.add_middleware(GuardMiddleware, timeout_s=settings.request_timeout_s)
    app.add_middleware(HttpMetricsMiddleware)  # outside the guard: sees its 503s
    install_browser_support(app, settings)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(service_router)
    install_openapi(app, DESCRIPTION, frozenset({"/healthz", "/readyz"}), batch_schema())
    return app
