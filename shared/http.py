"""What the two HTTP services share: the error shape and key checks of SPEC §3."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.auth import ApiKey, AuthError, KeyStore
from shared.aws import Aws
from shared.settings import Settings


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
    return await keys.authenticate(request.headers.get("authorization"))


AwsDep = Annotated[Aws, Depends(get_aws)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ApiKeyDep = Annotated[ApiKey, Depends(get_api_key)]


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


# Endpoints every HTTP service has.
service_router = APIRouter()


@service_router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@service_router.get("/metrics", response_class=PlainTextResponse)
async def metrics(aws: AwsDep) -> str:
    """AWS requests made by this process, in Prometheus text format."""
    return aws.counter.prometheus()
