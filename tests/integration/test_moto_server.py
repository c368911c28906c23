"""The local emulator's server (telemetry/moto_server.py): what it changes of moto's own."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest

from shared.aws import Aws
from shared.settings import Settings

pytestmark = pytest.mark.integration


def test_a_connection_serves_several_requests(moto_url: str) -> None:
    """Kept alive (werkzeug closed each one: a TCP handshake per request, both sides)."""
    url = urlsplit(moto_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
    sockets = []
    try:
        for _ in range(3):
            conn.request("GET", "/moto-api/")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            sockets.append(conn.sock)  # None once the server said "Connection: close"
    finally:
        conn.close()
    assert sockets[0] is not None and sockets.count(sockets[0]) == 3


async def test_an_empty_put_is_answered_at_once(aws: Aws, provisioned: Settings) -> None:
    """botocore sends `Expect: 100-continue` with Content-Length 0 for an empty object
    (the store's epoch markers); waitress 3.0 alone waits for a body that never comes."""
    key = "moto-server/empty"
    await aws.s3.put_object(Bucket=provisioned.bucket, Key=key, Body=b"")
    got = await aws.s3.get_object(Bucket=provisioned.bucket, Key=key)
    assert await got["Body"].read() == b""
