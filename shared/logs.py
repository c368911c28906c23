"""Logs as JSON lines, each carrying the work it describes.

The worker sets the queue, message id, S3 key and tenant of the message it
handles in a context variable (asyncio copies it into each task), so every
line a handler logs, however deep, says which tenant, object and message it
was about, without passing them around.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

_CONTEXT: ContextVar[dict[str, str]] = ContextVar("telemetry_log_context", default={})  # noqa: B039
# Attributes every LogRecord has: anything else came with `extra=` and is logged.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message", "asctime", "taskName", "color_message",  # uvicorn's copy with ANSI colours
}  # fmt: skip


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Add `fields` to every line logged inside the block (in this task)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def context() -> dict[str, str]:
    return dict(_CONTEXT.get())


def set_context(**fields: str) -> None:
    """Add `fields` until the current task ends (a request, once its key is known)."""
    _CONTEXT.set({**_CONTEXT.get(), **fields})


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            **_CONTEXT.get(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                doc[name] = value
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(service: str) -> None:
    """One JSON object per line on stderr (TELEMETRY_LOG_FORMAT=text for people)."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("TELEMETRY_LOG_FORMAT", "json") == "text":
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    else:
        handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("TELEMETRY_LOG_LEVEL", "INFO"))
