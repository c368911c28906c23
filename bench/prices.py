"""AWS list prices per request, shared by the benchmarks that turn request counts into cost.

One table, so that `bench.cost` (in-process) and `bench.pipeline` (the stack as
processes) price the same counts the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# us-east-1 list prices, USD per request (November 2026).
S3_CLASS_A = 0.005 / 1000  # PUT, COPY, POST, LIST
S3_CLASS_B = 0.0004 / 1000  # GET
SQS = 0.40 / 1e6  # standard queue, per 64 KiB request
SNS_PUBLISH = 0.50 / 1e6  # deliveries to SQS are free
DDB_WRITE = 0.625 / 1e6  # on-demand write request unit (items under 1 KiB)
DDB_READ = 0.125 / 1e6  # on-demand read request unit (strongly consistent, 4 KiB)
KINESIS_PUT_UNIT = 0.014 / 1e6  # provisioned mode, per 25 KiB PUT payload unit
PRICES = {
    ("s3", "PutObject"): S3_CLASS_A,
    ("s3", "ListObjectsV2"): S3_CLASS_A,
    ("s3", "DeleteObjects"): S3_CLASS_A,  # a POST; counted as class A to be safe
    ("s3", "GetObject"): S3_CLASS_B,
    ("sns", "Publish"): SNS_PUBLISH,
    ("dynamodb", "PutItem"): DDB_WRITE,
    ("dynamodb", "GetItem"): DDB_READ,
}
# The SQS message S3 sends for each notification: the emulator makes it, not our clients.
S3_NOTIFICATION = ("sqs", "SendMessage (S3 notifications)")


def unit_price(service: str, operation: str) -> float:
    """USD per request; Kinesis is priced by volume and shard hours, not by request."""
    return PRICES.get((service, operation), SQS if service == "sqs" else 0.0)


@dataclass(frozen=True)
class CostRow:
    service: str
    operation: str
    per_1000: float  # requests per 1,000 events
    usd_per_million: float  # USD per million events


def cost_rows(counts: Mapping[tuple[str, str], float], events: int) -> list[CostRow]:
    """Requests per 1,000 events and their price per million events, sorted by operation."""
    return [
        CostRow(service, op, n * 1000 / events, n / events * 1e6 * unit_price(service, op))
        for (service, op), n in sorted(counts.items())
        if n
    ]
