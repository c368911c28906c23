"""moto in server mode as the local stack runs it: `python -m telemetry.moto_server -p PORT`.

The same server as `python -m moto.server`, less two of its per-request
costs. They are the emulator's overhead, not AWS behaviour, and took about a
quarter of its CPU under `make bench-history` (py-spy, 2026-12-03):
- moto matches each request's host against the URL pattern of every backend
  it has (hundreds of regular expressions, under one lock). The answer
  depends on the host alone, so it is remembered per host.
- werkzeug formats an access-log line per request, which nobody reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

Lookup = Callable[[Any, str | None], Any]


def remembered(lookup: Lookup) -> Lookup:
    """`lookup` (a pure function of the host) asked once per host."""
    known: dict[str | None, Any] = {}

    def get(app: Any, host: str | None) -> Any:
        if host not in known:
            known[host] = lookup(app, host)
        return known[host]

    return get


def lighten() -> None:
    """Remove the two costs from moto's server in this process (call once, before it serves)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    lookup = DomainDispatcherApplication.get_backend_for_host
    DomainDispatcherApplication.get_backend_for_host = remembered(lookup)  # type: ignore[method-assign,assignment]


def main() -> None:
    from moto import server

    lighten()
    server.main()


if __name__ == "__main__":
    main()
