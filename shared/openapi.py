"""What both services' OpenAPI documents share: the error shape of SPEC §3, the
errors each operation really answers, the Bearer scheme, and no phantom 422.

FastAPI documents a 422 for every operation with parameters, but
shared/http.py answers validation errors 400 in the contract's shape; the
schema is rewritten once, when first asked for, to say what the service does.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(description="machine-readable, e.g. `invalid_date`, `forbidden`")
    message: str


class ErrorBody(BaseModel):
    """Every error answer: `{"error": {"code", "message"}}`."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok"]


class Ready(BaseModel):
    """Every dependency answered (an unready service answers 503)."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["ready"]
    checks: dict[str, str]


ERROR_TEXT = {
    304: "Not modified: the `If-None-Match` ETag is still current",
    400: "Bad input (a parameter, the body, a range)",
    401: "Missing, malformed, unknown or expired API key",
    403: "The key may not do this (another tenant, or a missing scope)",
    404: "No such resource",
    413: "Body over 1 MiB or too many JSON values",
    429: "Rate limited: retry after `Retry-After` seconds",
    503: "A dependency is unavailable or slow: retry after `Retry-After` seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an operation that answers these errors (503 always:
    every request passes the deadline guard)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 503}):
        if status == 304:
            out[status] = {"description": ERROR_TEXT[status]}
            continue
        entry: dict[str, Any] = {"model": ErrorBody, "description": ERROR_TEXT[status]}
        if status in (429, 503):
            entry["headers"] = RETRY_AFTER
        out[status] = entry
    return out


def _strip_validation(schema: dict[str, Any]) -> None:
    for path in schema.get("paths", {}).values():
        for op in path.values():
            op.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def install_openapi(
    app: FastAPI,
    description: str,
    public: frozenset[str],
    extra_schemas: dict[str, Any] | None = None,
) -> None:
    """Bearer auth on every operation except the `public` paths (probes);
    `extra_schemas` are components that operations refer to by hand."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        _strip_validation(schema)
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(extra_schemas or {})
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key: `Authorization: Bearer tlm_...`",
            }
        }
        schema["security"] = [{"bearer": []}]
        for path, ops in schema["paths"].items():
            if path in public:
                for op in ops.values():
                    op["security"] = []
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
