"""How a report answer leaves the service: JSON or CSV (by `Accept` or
`?format=csv`, so a plain link downloads it), with a weak ETag and
Cache-Control, and 304 when the client's `If-None-Match` is still current."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Any

import orjson
from fastapi import Query, Request, Response

from services.report.stats import to_csv

# Answers are per key (private) and change as events arrive (freshness is 30 s).
REPORT_CACHE = "private, max-age=5"
LIVE_CACHE = "private, no-cache"


class Format(StrEnum):
    json = "json"
    csv = "csv"


FormatParam = Annotated[
    Format | None,
    Query(alias="format", description="`csv` answers CSV, as `Accept: text/csv` does"),
]

CSV_CONTENT: dict[str, Any] = {"text/csv": {"schema": {"type": "string"}}}


def wants_csv(request: Request, fmt: Format | None) -> bool:
    if fmt is not None:
        return fmt is Format.csv
    return "text/csv" in request.headers.get("accept", "")


def etag_of(content: bytes) -> str:
    return 'W/"' + hashlib.blake2b(content, digest_size=12).hexdigest() + '"'


def _matches(header: str, etag: str) -> bool:
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


def cached(
    request: Request,
    content: bytes,
    media_type: str,
    cache: str = REPORT_CACHE,
    headers: dict[str, str] | None = None,
) -> Response:
    """`content` with its ETag, or an empty 304 when the client has it already."""
    etag = etag_of(content)
    out = {"ETag": etag, "Cache-Control": cache, "Vary": "Authorization, Accept", **(headers or {})}
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=out)
    return Response(content, media_type=media_type, headers=out)


def answer(
    request: Request,
    body: dict[str, Any],
    rows: list[dict[str, Any]],
    fmt: Format | None = None,
    cache: str = REPORT_CACHE,
    headers: dict[str, str] | None = None,
) -> Response:
    """JSON of `body` by default; CSV of `rows` when the client asks for it."""
    if wants_csv(request, fmt):
        return cached(request, to_csv(rows).encode(), "text/csv; charset=utf-8", cache, headers)
    return cached(request, orjson.dumps(body), "application/json", cache, headers)
