"""The local emulator's per-host dispatch cache answers as moto itself does."""

from __future__ import annotations

from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from telemetry.moto_server import remembered

HOSTS = [
    None,
    "moto_api",
    "dynamodb.us-east-1.amazonaws.com",
    "s3.amazonaws.com",
    "my-bucket.s3.amazonaws.com",
    "sqs.us-east-1.amazonaws.com",
    "kinesis.us-east-1.amazonaws.com",
    "sns.eu-west-1.amazonaws.com",
    "127.0.0.1:5000",
]


def test_remembered_dispatch_gives_moto_s_own_answer_and_asks_once_per_host() -> None:
    app = DomainDispatcherApplication(create_backend_app)
    original = DomainDispatcherApplication.get_backend_for_host
    asked: list[str | None] = []

    def counted(self: Any, host: str | None) -> Any:
        asked.append(host)
        return original(self, host)

    lookup = remembered(counted)
    for _ in range(3):
        assert [lookup(app, h) for h in HOSTS] == [original(app, h) for h in HOSTS]
    assert asked == HOSTS
    assert lookup(app, "dynamodb.us-east-1.amazonaws.com") == "dynamodb"
