"""What the two HTTP services share: the error shape and key checks of SPEC §3,
the request deadline, request metrics, and readiness checks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import ApiKey, AuthError, KeyStore
from shared.aws import Aws
from shared.errors import is_transient
from shared.logs import set_context
from shared.observe import HTTP_SECONDS, serve_metrics_or_warn
from shared.openapi import Health
from shared.settings import Settings

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5


class ApiError(Exception):
    """A 4xx answer in the contract's shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def get_aws(request: Request) -> Aws:
    aws: Aws = request.app.state.aws
    return aws


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_api_key(request: Request) -> ApiKey:
    keys: KeyStore = request.app.state.keys
    key = await keys.authenticate(request.headers.get("authorization"))
    set_context(tenant=key.tenant_id)  # every line this request logs from here on
    return key


AwsDep = Annotated[Aws, Depends(get_aws)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ApiKeyDep = Annotated[ApiKey, Depends(get_api_key)]


def install_browser_support(app: FastAPI, settings: Settings) -> None:
    """gzip for large answers, and CORS for the configured origins only (none by
    default: a browser page of another site then cannot read any answer)."""
    # Level 1: a year's daily series (293 KB of JSON) takes 2.4 ms to 82 KB,
    # against 9 ms to 64 KB at level 6 (session 19): a report's time, not bytes,
    # is what its goal counts.
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=1)
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match"],
            expose_headers=["ETag", "Retry-After", "X-Next-Cursor"],
            max_age=600,
        )


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError | AuthError)
        headers = exc.headers if isinstance(exc, ApiError) else None
        return error_response(exc.status, exc.code, exc.message, headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors: list[Any] = list(exc.errors())
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in errors[:5]
        ]
        return error_response(400, "invalid_request", "; ".join(parts) or "invalid request")

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(AuthError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def unavailable(message: str) -> Response:
    """503 in the contract's shape: the client should retry after a pause."""
    return error_response(503, "unavailable", message, {"Retry-After": str(RETRY_AFTER_S)})


class GuardMiddleware:
    """Every request is answered, within `timeout_s`, in the contract's shape.

    A dependency that is down or frozen (DynamoDB, PostgreSQL, the stream) makes
    a request fail or hang; either way the client gets 503 with Retry-After
    within the deadline, so a producer retries instead of losing events. Any
    other escaped error is a 500 in JSON, never a text page.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive, tracked)
            return
        except TimeoutError:
            response = unavailable(f"no answer within {self.timeout_s:g} s; retry later")
            log.warning("%s %s timed out", scope.get("method"), scope.get("path"))
        except Exception as exc:
            if started:
                raise
            if is_transient(exc):
                log.warning("%s %s: a dependency failed: %s", scope.get("method"),
                            scope.get("path"), exc)  # fmt: skip
                response = unavailable("a dependency is unavailable; retry later")
            else:
                log.exception("%s %s failed", scope.get("method"), scope.get("path"))
                response = error_response(500, "internal_error", "internal error")
        if not started:
            await response(scope, receive, send)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetricsMiddleware:
    """Latency of every request by route template, method and status. The
    template (`/v1/tenants/{tenant_id}/tickets/{ticket_id:path}`) comes from
    the route that matched; an unmatched path is `unmatched` and an unknown
    method `other`, so no client can grow the number of series."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in METHODS else "other"
            HTTP_SECONDS.labels(route, method, str(status)).observe(time.monotonic() - started)


async def metrics_server(aws: Aws, settings: Settings) -> asyncio.Server | None:
    """`/metrics` of an HTTP service: on TELEMETRY_METRICS_PORT, never its public port."""
    return await serve_metrics_or_warn([aws.counter], settings.host, settings.metrics_port)


Check = Callable[[], Awaitable[None]]


class Readiness:
    """`/readyz`: every dependency answered, remembered for `cache_s` so that
    unauthenticated probes cost no request to AWS or the database."""

    def __init__(self, checks: dict[str, Check], cache_s: float, timeout_s: float = 3.0) -> None:
        self.checks = checks
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._until = 0.0
        self._answer: tuple[bool, dict[str, str]] = (False, {})
        self._lock = asyncio.Lock()

    async def _run(self, check: Check) -> str:
        try:
            async with asyncio.timeout(self.timeout_s):
                await check()
        except Exception as exc:
            return f"unavailable: {type(exc).__name__}"
        return "ok"

    async def state(self) -> tuple[bool, dict[str, str]]:
        async with self._lock:  # one probe at a time reaches the dependencies
            if time.monotonic() >= self._until:
                names = list(self.checks)
                results = await asyncio.gather(*(self._run(self.checks[n]) for n in names))
                status = dict(zip(names, results, strict=True))
                self._answer = (all(r == "ok" for r in results), status)
                self._until = time.monotonic() + self.cache_s
            return self._answer

    async def response(self) -> Response:
        ready, checks = await self.state()
        if ready:
            return json_response({"status": "ready", "checks": checks})
        failed = ", ".join(f"{n} {r}" for n, r in checks.items() if r != "ok")
        return unavailable(f"not ready: {failed}")


# Endpoints every HTTP service has.
service_router = APIRouter()


@service_router.get("/healthz", tags=["health"], operation_id="getHealth", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
