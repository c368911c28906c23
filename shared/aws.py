"""AWS clients for one process, built in `main()` and passed to handlers.

Every request is counted by service and operation: cost per event is a
feature, and the counts are what the benchmarks and `/metrics` report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aioboto3
from botocore.config import Config
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_kinesis import KinesisClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


def body_bytes(body: Any) -> int:
    """Length of a request body as botocore holds it: bytes, text or a seekable file."""
    if body is None:
        return 0
    if isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    if isinstance(body, str):
        return len(body.encode())
    try:  # a file: its size from where it stands
        at = body.tell()
        end = body.seek(0, 2)
        body.seek(at)
        return int(end - at)
    except (AttributeError, OSError, ValueError):
        return 0


@dataclass(eq=False)  # hashable: botocore keys handlers by identity
class RequestCounter(Collector):
    """Counts every request of one set of clients, and the payload bytes it moves
    in S3 (what storage traffic costs grows with); a collector of `/metrics`."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    s3_bytes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (op, read|written)

    def __call__(self, model: Any, **_: Any) -> None:
        self.counts[(model.service_model.service_name, model.name)] += 1

    def s3_sent(self, model: Any, params: Any, **_: Any) -> None:
        """before-call.s3: the body of a PutObject or UploadPart."""
        n = body_bytes(params.get("body")) if isinstance(params, dict) else 0
        if n:
            self.s3_bytes[(model.name, "written")] += n

    def s3_received(self, model: Any, parsed: Any, **_: Any) -> None:
        """after-call.s3: the body of a GetObject (its ContentLength, a range's if ranged)."""
        n = parsed.get("ContentLength", 0) if isinstance(parsed, dict) else 0
        if model.name == "GetObject" and n:
            self.s3_bytes[(model.name, "read")] += int(n)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "telemetry_aws_requests",
            "AWS API calls made by this process, by operation (an SDK retry is not counted again).",
            labels=["service", "operation"],
        )
        for (service, op), n in sorted(self.counts.items()):
            family.add_metric([service, op], n)
        yield family
        payload = CounterMetricFamily(
            "telemetry_aws_s3_bytes",
            "Payload bytes of S3 objects this process wrote (PutObject, UploadPart) and read "
            "(GetObject), by operation and direction.",
            labels=["operation", "direction"],
        )
        for (op, direction), n in sorted(self.s3_bytes.items()):
            payload.add_metric([op, direction], n)
        yield payload


@dataclass
class Aws:
    s3: S3Client
    sqs: SQSClient
    sns: SNSClient
    kinesis: KinesisClient
    dynamodb: DynamoDBClient
    counter: RequestCounter


USER_AGENT = "telemetry/1 (aiobotocore)"


def client_config(settings: Settings, *, interactive: bool = False) -> Config:
    """Workers wait patiently (long polls take 20 s; the worker retries passing
    failures itself). A request a client waits on must fail within seconds, so
    that it can answer 503 and the client retry: few attempts, short timeouts.

    A fixed user agent: botocore otherwise rebuilds its own from a dozen
    sanitised parts twice per request, a tenth of the real-time loader's CPU
    (its conditional puts are one request per ticket)."""
    attempts, connect_s, read_s = (2, 1, 5) if interactive else (5, 5, 30)
    return Config(
        region_name=settings.aws_region,
        user_agent=USER_AGENT,
        retries={"mode": "standard", "max_attempts": attempts},
        connect_timeout=connect_s,
        read_timeout=read_s,
        max_pool_connections=50,
    )


async def with_account(settings: Settings) -> Settings:
    """Settings with the account's default names filled in. STS GetCallerIdentity
    needs no permission; it is called only when a name is left unset (the
    deployments set them all, so they make no call)."""
    if not settings.needs_account():
        return settings
    session = aioboto3.Session(
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        region_name=settings.aws_region,
    )
    config = client_config(settings)
    async with session.client("sts", endpoint_url=settings.aws_endpoint_url, config=config) as sts:
        me = await sts.get_caller_identity()
    partition = str(me["Arn"]).split(":")[1]
    return settings.with_account(str(me["Account"]), partition)


@asynccontextmanager
async def open_aws(settings: Settings, *, interactive: bool = False) -> AsyncIterator[Aws]:
    session = aioboto3.Session(
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        region_name=settings.aws_region,
    )
    counter = RequestCounter()
    config = client_config(settings, interactive=interactive)
    async with AsyncExitStack() as stack:
        clients: dict[str, Any] = {}
        for name in ("s3", "sqs", "sns", "kinesis", "dynamodb"):
            client = await stack.enter_async_context(
                session.client(name, endpoint_url=settings.aws_endpoint_url, config=config)
            )
            client.meta.events.register("before-call.*.*", counter)
            if name == "s3":
                client.meta.events.register("before-call.s3.*", counter.s3_sent)
                client.meta.events.register("after-call.s3.*", counter.s3_received)
            clients[name] = client
        yield Aws(counter=counter, **clients)
