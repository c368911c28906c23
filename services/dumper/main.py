from __future__ import annotations

from services.dumper.dumper import Dumper, DumperConfig
from shared.aws import open_aws
from shared.observe import serve_metrics_or_warn
from shared.settings import Settings
from shared.worker import stop_event_on_signals


async def run(settings: Settings) -> None:
    stop = stop_event_on_signals()
    config = DumperConfig(
        stream=settings.stream,
        bucket=settings.bucket,
        checkpoints_table=settings.checkpoints_table,
        max_bytes=settings.buffer_max_bytes,
        max_age_s=settings.buffer_max_age_s,
        idle_poll_s=settings.dumper_idle_poll_s,
    )
    async with open_aws(settings) as aws:
        server = await serve_metrics_or_warn([aws.counter], settings.host, settings.metrics_port)
        try:
            await Dumper(aws.kinesis, aws.s3, aws.dynamodb, config).run(stop)
        finally:
            if server is not None:
                server.close()
