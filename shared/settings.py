"""Every setting of every service, read from environment variables only.

The same variables drive the local stack, docker compose and AWS; the README
lists them. `AWS_ENDPOINT_URL` unset means real AWS.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.timebuckets import Calendar, calendars

LOCAL_ENV_FILE = Path(".telemetry") / "local.env"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELEMETRY_", extra="ignore")

    aws_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL")
    )
    aws_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )

    aws_access_key_id: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID")
    )
    aws_secret_access_key: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY")
    )

    # Unset: telemetry-<account id>-<region>, a name no other account can hold
    # (S3 names are global); see `with_account`.
    bucket: str = ""
    stream: str = "telemetry-events"
    stream_shards: int = Field(default=2, ge=1)
    topic: str = "telemetry-tickets"
    topic_arn: str = ""  # unset: built from `topic`, the account and the region
    filter_queue: str = "telemetry-filter"
    consolidator_queue: str = "telemetry-consolidator"
    enricher_queue: str = "telemetry-enricher"
    realtime_queue: str = "telemetry-load-realtime"
    reports_queue: str = "telemetry-load-reports"
    keys_table: str = "telemetry-api-keys"
    checkpoints_table: str = "telemetry-checkpoints"
    realtime_table: str = "telemetry-realtime"

    database_url: str | None = None
    # Put into the URL's password: lets a deployment keep the URL in plain
    # configuration and the password in a secret (RDS's managed master secret).
    database_password: str | None = None

    host: str = "127.0.0.1"
    collector_port: int = 8080
    # Requests within this many ms share one PutRecords (group commit).
    collector_linger_ms: int = Field(default=25, ge=0, le=1000)
    # Bytes of accepted requests waiting for the stream; beyond it the collector
    # answers 503 at once instead of queueing without bound.
    collector_max_pending_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    # Events per second each API key may post to one collector process (0: no
    # limit), and the burst it may send at once (at least a full batch).
    collector_rate_limit: float = Field(default=1000.0, ge=0)
    collector_rate_burst: int = Field(default=5000, ge=500)
    report_port: int = 8081
    # HTTP services: a request not answered within this (a dependency is slow or
    # down) gets 503 with Retry-After; also the report service's statement timeout.
    request_timeout_s: float = Field(default=8.0, gt=0, le=120)
    readyz_cache_s: float = Field(default=5.0, ge=0)  # /readyz re-checks at most this often
    metrics_port: int = Field(default=0, ge=0, le=65535)  # queue workers' /metrics; 0: off

    buffer_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    buffer_max_age_s: float = Field(default=5.0, gt=0)
    dumper_idle_poll_s: float = Field(default=0.5, gt=0)

    worker_concurrency: int = Field(default=4, ge=1)
    worker_wait_s: int = Field(default=10, ge=0, le=20)
    visibility_timeout_s: int = Field(default=60, ge=5)
    max_receives: int = Field(default=10, ge=1)
    drain_timeout_s: float = Field(default=30.0, gt=0)
    handler_timeout_s: float = Field(default=300.0, gt=0)

    store_table: str = "telemetry-store"
    compact_after: int = Field(default=6, ge=2)
    store_cache_bytes: int = Field(default=128 * 1024 * 1024, ge=0)
    store_retention_s: float = Field(default=86_400.0, ge=0)
    store_open_retention_s: float = Field(default=30 * 86_400.0, ge=0)
    store_partition_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    store_max_partitions: int = Field(default=64, ge=1, le=4096)
    # Zones whose local days, weeks and months get their own rollup rows (fast
    # reports in them; other zones are exact too, from UTC buckets). The loader
    # and the report service must agree; a zone added later has rows only from
    # then on.
    report_zones: str = "UTC,America/Sao_Paulo"
    # A coarse rollup bucket is folded this long after it ends (late events
    # before then need no read-modify-write of coarse rows).
    fold_grace_s: float = Field(default=900.0, ge=0)
    fold_every_s: float = Field(default=10.0, gt=0)  # how often the loader's folder runs

    def report_calendars(self) -> tuple[Calendar, ...]:
        return calendars(tuple(z.strip() for z in self.report_zones.split(",") if z.strip()))

    def needs_account(self) -> bool:
        return not (self.bucket and self.topic_arn)

    def with_account(self, account: str, partition: str = "aws") -> Settings:
        """The names that depend on the AWS account, where they are not set."""
        return self.model_copy(
            update={
                "bucket": self.bucket or f"telemetry-{account}-{self.aws_region}",
                "topic_arn": self.topic_arn
                or f"arn:{partition}:sns:{self.aws_region}:{account}:{self.topic}",
            }
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("TELEMETRY_DATABASE_URL is not set")
        if self.database_password is None:
            return self.database_url
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url).set(password=self.database_password)
        return url.render_as_string(hide_password=False)


def load_settings(*, local_env: bool = False) -> Settings:
    """Build settings; the command line also reads what `telemetry up` left behind.

    Variables set in the environment always win over the file.
    """
    if local_env and LOCAL_ENV_FILE.is_file():
        return Settings(_env_file=LOCAL_ENV_FILE)  # type: ignore[call-arg]
    return Settings()
