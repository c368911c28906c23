"""moto as the local stack runs it: `python -m telemetry.moto_server -H HOST -p PORT`.

moto's own WSGI application, served by waitress instead of werkzeug's
development server (`python -m moto.server`), less the per-request costs
that are the emulator's, not AWS behaviour. Together they were about half
of a conditional put's CPU, on both sides (`python -m bench.emulator_puts`):
- werkzeug closes every connection and starts a thread for each: every
  request paid a TCP handshake and a thread. waitress keeps connections
  alive and serves them from a pool of threads (SQS long polls hold one each
  for up to 20 s, hence many);
- moto matches each request's host against the URL pattern of every backend
  it has (hundreds of regular expressions, under one lock); the answer
  depends on the host alone, so it is remembered per host;
- an access-log line per request, which nobody reads.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any

THREADS = 64
CONNECTIONS = 1000

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
    """Remember moto's backend per host, and log no request (call once, before serving)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    lookup = DomainDispatcherApplication.get_backend_for_host
    DomainDispatcherApplication.get_backend_for_host = remembered(lookup)  # type: ignore[method-assign,assignment]


def mend_expect_continue() -> None:
    """waitress 3.0 answers `Expect: 100-continue` with 100 Continue and then waits for a
    body, even when Content-Length says 0 (botocore sends both with an empty S3 PUT):
    such a request has nothing to wait for."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser

    class Parser(HTTPRequestParser):  # type: ignore[misc]
        expect_continue: bool
        chunked: bool
        content_length: int

        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            if self.expect_continue and not self.chunked and self.content_length == 0:
                self.expect_continue = False

    HTTPChannel.parser_class = Parser


def main() -> None:
    import waitress
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto writes it into queue URLs
    lighten()
    mend_expect_continue()
    logging.getLogger("waitress").setLevel(logging.ERROR)
    waitress.serve(
        DomainDispatcherApplication(create_backend_app),
        host=args.host,
        port=args.port,
        threads=THREADS,
        connection_limit=CONNECTIONS,
        asyncore_use_poll=True,
        ident="moto",
    )


if __name__ == "__main__":
    main()
