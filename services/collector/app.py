"""Collector: `POST /v1/events` validates and writes events to the stream (SPEC §3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response

from services.collector.stream import StreamBusyError, StreamUnavailableError, StreamWriter
from shared.auth import ApiKey, KeyStore
from shared.aws import Aws, open_aws
from shared.events import InvalidEventError, Rejection, canonical, validate
from shared.http import (
    RETRY_AFTER_S,
    ApiError,
    ApiKeyDep,
    GuardMiddleware,
    Readiness,
    install_error_handlers,
    json_response,
    service_router,
)
from shared.settings import Settings

MAX_BODY = 1024 * 1024
MAX_EVENTS = 500

router = APIRouter()


def _writer(request: Request) -> StreamWriter:
    writer: StreamWriter = request.app.state.writer
    return writer


WriterDep = Annotated[StreamWriter, Depends(_writer)]


def check_batch(body: bytes, api_key: ApiKey, now: datetime) -> tuple[list[bytes], list[Rejection]]:
    """Split a request body into accepted NDJSON lines and per-event rejections."""
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"body is not JSON: {exc}") from exc
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        raise ApiError(
            400, "invalid_batch", f"body must be a JSON array of 1 to {MAX_EVENTS} events"
        )
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


@router.post("/v1/events", status_code=202)
async def post_events(request: Request, api_key: ApiKeyDep, writer: WriterDep) -> Response:
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
    accepted, rejected = check_batch(body, api_key, datetime.now(UTC))
    if accepted:
        try:
            await writer.write(api_key.tenant_id, accepted)
        except StreamBusyError as exc:
            raise ApiError(
                503, "busy", f"retry the whole batch: {exc}", {"Retry-After": str(RETRY_AFTER_S)}
            ) from exc
        except StreamUnavailableError as exc:
            raise ApiError(
                503, "stream_unavailable", f"retry the whole batch: {exc}", {"Retry-After": "1"}
            ) from exc
    answer = {
        "accepted": len(accepted),
        "rejected": [
            {"index": r.index, "event_id": r.event_id, "code": r.code, "message": r.message}
            for r in rejected
        ],
    }
    return json_response(answer, 202)


@router.get("/readyz")
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


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_aws(settings, interactive=True) as aws:
            app.state.settings = settings
            app.state.aws = aws
            app.state.keys = KeyStore(aws.dynamodb, settings.keys_table)
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
            try:
                yield
            finally:  # uvicorn has answered every request by now
                await writer.close(settings.drain_timeout_s)

    app = FastAPI(title="Telemetry collector", version="1", lifespan=lifespan)
    app.add_middleware(GuardMiddleware, timeout_s=settings.request_timeout_s)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(service_router)
    return app
