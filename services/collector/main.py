from __future__ import annotations

from services.collector.app import create_app
from shared.service import serve_http
from shared.settings import Settings


async def run(settings: Settings) -> None:
    await serve_http(create_app(settings), settings.host, settings.collector_port)
