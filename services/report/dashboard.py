"""The dashboard: one page and its assets, served by the report service.

Everything comes from installed packages (this one's `static/` folder and the
plotly.js that the `plotly` wheel ships), so the page works offline and needs
no other server. The page itself is public; every number on it comes from the
API with the key the user pastes (kept in the tab's sessionStorage), and
`GET /v1/key` tells the page which tenant that key reads.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict

from shared.http import ApiError, ApiKeyDep, json_response
from shared.openapi import errors

STATIC = Path(__file__).parent / "static"
ASSETS = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "plotly.min.js": "text/javascript",
}
# The page's own files may change with a release; plotly.js only with its wheel.
PAGE_CACHE = "no-cache"
# Scripts only from this origin; plotly sets inline styles on what it draws.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'"
)

dashboard_router = APIRouter()


class KeyInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: str
    scopes: list[Literal["ingest", "read"]]
    key_id: str


@dashboard_router.get(
    "/v1/key", tags=["keys"], operation_id="getKey", response_model=KeyInfo,
    responses=errors(401),
)  # fmt: skip
async def key_info(api_key: ApiKeyDep) -> Response:
    """The tenant and scopes of the key that calls: how a page learns whose numbers it shows."""
    return json_response(
        {"tenant_id": api_key.tenant_id, "scopes": sorted(api_key.scopes), "key_id": api_key.key_id}
    )


def plotly_js() -> Path:
    return Path(str(files("plotly") / "package_data" / "plotly.min.js"))


@dashboard_router.get("/", include_in_schema=False)
async def root() -> Response:
    return RedirectResponse("/dashboard")


@dashboard_router.get("/dashboard", include_in_schema=False)
async def page() -> Response:
    headers = {"Cache-Control": PAGE_CACHE, "Content-Security-Policy": CSP,
               "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}  # fmt: skip
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=headers)


@dashboard_router.get("/dashboard/assets/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise ApiError(404, "not_found", "no such asset")
    path = plotly_js() if name == "plotly.min.js" else STATIC / name
    cache = "public, max-age=86400" if name == "plotly.min.js" else PAGE_CACHE
    headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    return FileResponse(path, media_type=ASSETS[name], headers=headers)
