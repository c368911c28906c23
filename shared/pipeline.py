"""The pipeline, declared once: every stage as a value.

Each stage says how it runs (HTTP service, queue worker, single stream reader),
what it reads (its queues and what feeds them), what it writes, how it scales
and which AWS actions it needs. `telemetry provision`, `telemetry up`, the
command line, the worker's key check and the deployment files (compose,
CloudFormation, the Helm chart, the README's table) are derived from this list
or tested against it: adding a stage is one entry here plus its handler.

Resources are named by the `Settings` field that holds their name, so this
module imports nothing of the services and nobody imports in a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from shared.layout import CONSOLIDATED, ENRICHED, FILTERED, PARKED, QUARANTINE, RAW, STORE

if TYPE_CHECKING:
    from shared.settings import Settings

DLQ_SUFFIX = "-dlq"
# Shutdown grace of every process: a worker stops polling, lets in-flight
# messages finish for TELEMETRY_DRAIN_TIMEOUT_S (30 s), then cancels the rest
# and waits 5 s more. ECS allows at most 120 s; ECS and Kubernetes default to 30 s.
STOP_GRACE_S = 60


class Kind(StrEnum):
    HTTP = "http"  # serves a port behind a load balancer; any number of replicas
    QUEUE = "queue"  # polls its SQS queues; any number of replicas
    STREAM = "stream"  # reads every shard and checkpoints: exactly one replica


class Feed(StrEnum):
    """What sends messages to a queue."""

    BUCKET = "bucket"  # S3 ObjectCreated notifications of one prefix
    TOPIC = "topic"  # the SNS topic, raw message delivery


class Resource(StrEnum):
    """A resource every stage may use; the value is the `Settings` field naming it."""

    BUCKET = "bucket"
    STREAM = "stream"
    TOPIC = "topic"
    KEYS_TABLE = "keys_table"
    CHECKPOINTS_TABLE = "checkpoints_table"
    REALTIME_TABLE = "realtime_table"
    STORE_TABLE = "store_table"


@dataclass(frozen=True)
class Queue:
    """A work queue (and its DLQ, same name + `-dlq`) of S3 object keys."""

    setting: str  # the Settings field holding its name
    feed: Feed
    prefix: str  # the layout stage of every key its messages name

    def name(self, settings: Settings) -> str:
        return str(getattr(settings, self.setting))

    def dlq_name(self, settings: Settings) -> str:
        return self.name(settings) + DLQ_SUFFIX

    @property
    def env(self) -> str:
        return "TELEMETRY_" + self.setting.upper()


@dataclass(frozen=True)
class Grant:
    """AWS actions on one resource; `prefixes` narrow S3 object actions to them."""

    resource: Resource
    actions: tuple[str, ...]
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scaling:
    """Replicas and the rule that moves them (the deployments implement it)."""

    min: int
    max: int
    backlog_per_replica: int = 0  # queue workers: visible messages one replica absorbs
    cpu_percent: int = 0  # HTTP services: average CPU to hold

    def rule(self) -> str:
        if self.min == self.max:
            return f"exactly {self.min}"
        metric = (
            f"{self.backlog_per_replica} queued messages per replica"
            if self.backlog_per_replica
            else f"{self.cpu_percent}% CPU"
        )
        return f"{self.min} to {self.max}, {metric}"


# Every queue worker (shared/worker.py) on its queue and its dead-letter queue.
QUEUE_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
    "sqs:GetQueueAttributes",
)
# Dead-lettering, and the DLQ's depth and oldest message on /metrics (a peek
# that hides nothing: shared/queues.py).
DLQ_ACTIONS = (
    "sqs:SendMessage",
    "sqs:GetQueueUrl",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
)


@dataclass(frozen=True)
class Stage:
    name: str
    kind: Kind
    does: str
    reads: str  # what feeds it, in words (queue workers: their queues)
    writes: tuple[str, ...]
    scaling: Scaling
    grants: tuple[Grant, ...]
    queues: tuple[Queue, ...] = ()
    port_setting: str | None = None  # HTTP services: the Settings field of their port
    database: bool = False  # needs TELEMETRY_DATABASE_URL

    def actions(self) -> set[str]:
        """Every AWS action of the stage, its queues' included."""
        found = {a for g in self.grants for a in g.actions}
        if self.queues:
            found |= {*QUEUE_ACTIONS, *DLQ_ACTIONS}
        return found


WORKERS = Scaling(min=1, max=10, backlog_per_replica=20)
HTTP = Scaling(min=2, max=10, cpu_percent=60)
SINGLE = Scaling(min=1, max=1)

FILTER_QUEUE = Queue("filter_queue", Feed.BUCKET, RAW)
CONSOLIDATOR_QUEUE = Queue("consolidator_queue", Feed.BUCKET, FILTERED)
ENRICHER_QUEUE = Queue("enricher_queue", Feed.BUCKET, CONSOLIDATED)
REALTIME_QUEUE = Queue("realtime_queue", Feed.TOPIC, ENRICHED)
REPORTS_QUEUE = Queue("reports_queue", Feed.TOPIC, ENRICHED)

# API keys: looked up, their last use written now and then (shared/auth.py).
_KEYS_USE = Grant(
    Resource.KEYS_TABLE, ("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DescribeTable")
)

STAGES: tuple[Stage, ...] = (
    Stage(
        name="collector",
        kind=Kind.HTTP,
        does="REST ingestion: validation, API keys, batched PutRecords",
        reads="POST /v1/events",
        writes=("Kinesis stream",),
        scaling=HTTP,
        grants=(
            Grant(Resource.STREAM, ("kinesis:PutRecords", "kinesis:DescribeStreamSummary")),
            _KEYS_USE,
        ),
        port_setting="collector_port",
    ),
    Stage(
        name="dumper",
        kind=Kind.STREAM,
        does="Kinesis → per-tenant gzip NDJSON objects; checkpoints per shard",
        reads="every shard of the Kinesis stream",
        writes=(f"{RAW}/", "checkpoints table"),
        scaling=SINGLE,
        grants=(
            Grant(
                Resource.STREAM,
                ("kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"),
            ),
            Grant(Resource.CHECKPOINTS_TABLE, ("dynamodb:GetItem", "dynamodb:PutItem")),
            Grant(Resource.BUCKET, ("s3:PutObject",), (RAW,)),
        ),
    ),
    Stage(
        name="filter",
        kind=Kind.QUEUE,
        does="re-validation, quarantine, grouping by ticket",
        reads=f"{RAW}/ objects",
        writes=(f"{FILTERED}/", f"{QUARANTINE}/"),
        scaling=WORKERS,
        grants=(
            Grant(Resource.BUCKET, ("s3:GetObject",), (RAW,)),
            Grant(Resource.BUCKET, ("s3:PutObject",), (FILTERED, QUARANTINE)),
        ),
        queues=(FILTER_QUEUE,),
    ),
    Stage(
        name="consolidator",
        kind=Kind.QUEUE,
        does="the ticket event store: hot partitions and sealed cold runs",
        reads=f"{FILTERED}/ objects",
        writes=(f"{STORE}/", f"{CONSOLIDATED}/", "store table"),
        scaling=WORKERS,
        grants=(
            Grant(Resource.BUCKET, ("s3:GetObject",), (FILTERED, STORE)),
            Grant(Resource.BUCKET, ("s3:PutObject",), (STORE, CONSOLIDATED)),
            Grant(Resource.BUCKET, ("s3:DeleteObject",), (STORE,)),
            Grant(Resource.BUCKET, ("s3:ListBucket",), (STORE,)),
            # tenants' store states (conditional puts) and compaction leases
            Grant(
                Resource.STORE_TABLE,
                ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"),
            ),
        ),
        queues=(CONSOLIDATOR_QUEUE,),
    ),
    Stage(
        name="enricher",
        kind=Kind.QUEUE,
        does="the metric engine and the SNS fan-out",
        reads=f"{CONSOLIDATED}/ objects",
        writes=(f"{ENRICHED}/", f"{PARKED}/", "SNS topic"),
        scaling=WORKERS,
        grants=(
            Grant(Resource.BUCKET, ("s3:GetObject",), (CONSOLIDATED, FILTERED)),
            # a batch's own lines may be missing (a replay): 404 needs ListBucket, else 403
            Grant(Resource.BUCKET, ("s3:ListBucket",), (FILTERED,)),
            # parked/<tenant>/<stage>/: the tenant comes first, so no narrower prefix.
            Grant(Resource.BUCKET, ("s3:PutObject",), (ENRICHED, PARKED)),
            Grant(Resource.TOPIC, ("sns:Publish", "sns:GetTopicAttributes")),
        ),
        queues=(ENRICHER_QUEUE,),
    ),
    Stage(
        name="loader",
        kind=Kind.QUEUE,
        does="DynamoDB real-time view; PostgreSQL facts and rollups",
        reads="SNS topic (two queues: real-time and reports)",
        writes=("realtime table", "PostgreSQL", f"{PARKED}/"),
        scaling=WORKERS,
        grants=(
            Grant(Resource.BUCKET, ("s3:GetObject",), (ENRICHED,)),
            Grant(Resource.BUCKET, ("s3:PutObject",), (PARKED,)),
            Grant(Resource.REALTIME_TABLE, ("dynamodb:PutItem",)),
        ),
        queues=(REALTIME_QUEUE, REPORTS_QUEUE),
        database=True,
    ),
    Stage(
        name="report",
        kind=Kind.HTTP,
        does="the read API",
        reads="GET /v1/tenants/…",
        writes=(),
        scaling=HTTP,
        grants=(
            Grant(Resource.REALTIME_TABLE, ("dynamodb:Query", "dynamodb:DescribeTable")),
            _KEYS_USE,
        ),
        port_setting="report_port",
        database=True,
    ),
)

SERVICES = tuple(stage.name for stage in STAGES)
QUEUES = tuple(q for stage in STAGES for q in stage.queues)


def stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


def stage_of(queue: Queue) -> Stage:
    return next(s for s in STAGES if queue in s.queues)


def queue_names(settings: Settings) -> list[str]:
    return [q.name(settings) for q in QUEUES]


def markdown_table() -> str:
    """The README's table of stages (a test keeps the README equal to it)."""
    rows = [
        "| stage | runs as | reads | writes | replicas |",
        "|---|---|---|---|---|",
    ]
    for s in STAGES:
        reads = s.reads
        if s.queues:
            names = ", ".join(f"`{q.env}`" for q in s.queues)
            reads = f"{s.reads} via {names} (+ DLQ)"
        writes = ", ".join(s.writes) or "—"
        rows.append(f"| `{s.name}` | {s.kind} | {reads} | {writes} | {s.scaling.rule()} |")
    return "\n".join(rows) + "\n"


def actions_table() -> str:
    """docs/deploy.md's table of IAM actions per stage (a test keeps them equal)."""
    rows = ["| stage | resource | actions |", "|---|---|---|"]
    for s in STAGES:
        for g in s.grants:
            where = f"`{g.resource.value}`" + (
                " " + ", ".join(f"`{p}/`" for p in g.prefixes) if g.prefixes else ""
            )
            rows.append(f"| `{s.name}` | {where} | {', '.join(g.actions)} |")
        if s.queues:
            names = ", ".join(f"`{q.setting}`" for q in s.queues)
            rows.append(f"| `{s.name}` | {names} | {', '.join(QUEUE_ACTIONS)} |")
            rows.append(f"| `{s.name}` | their dead-letter queues | {', '.join(DLQ_ACTIONS)} |")
    return "\n".join(rows) + "\n"
