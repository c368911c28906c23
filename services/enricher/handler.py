"""Enricher: per-ticket metrics for every ticket of a consolidated batch.

Writes one `enriched/` object per batch and announces it on SNS with a single
message, so the two loaders receive batches, not tickets.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from services.enricher.metrics import TicketResult, dedupe, evaluate
from shared.isolation import park, reason_of
from shared.layout import (
    CONSOLIDATED,
    ENRICHED,
    FILTERED,
    batch_of,
    decode_lines,
    encode_ndjson,
    expect_key,
    stage_key,
)
from shared.objects import ObjectMissingError, get_bytes, put_bytes

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sns import SNSClient


@dataclass(frozen=True)
class EnricherDeps:
    s3: S3Client
    sns: SNSClient
    bucket: str
    topic_arn: str


def ticket_record(tenant: str, ticket_id: str, version: int, r: TicketResult) -> dict[str, Any]:
    """What the loaders store: the API view plus the facts reports are built from."""
    return {
        "tenant_id": tenant,
        "ticket_id": ticket_id,
        "version": version,
        "metrics": r.metrics(),
        "group_stints": [s.to_json() for s in r.group_stints],
        "agent_stints": [s.to_json() for s in r.agent_stints],
        "events": r.events,
        "facts": {
            "status": r.status,
            "created_at": r.created_at,
            "closed_at": r.closed_at,
            "first_assigned_at": r.first_assigned_at,
            "first_response_at": r.first_response_at,
            "first_response_agent_id": r.first_response_agent_id,
            "closing_agent_id": r.closing_agent_id,
            "abandoned": r.abandoned,
            "channel": r.channel,
            "first_group_id": r.first_group_id,
            "group_id": r.group_id,
            "agent_id": r.agent_id,
            "last_agent_id": r.last_agent_id,
            "queue_since": r.queue_since,
            "messages": r.messages,
            "replies": r.replies,
            "group_stints": [s.row() for s in r.group_stints],
            "agent_stints": [s.row() for s in r.agent_stints],
        },
    }


def changes_realtime(r: TicketResult, conflicting: bool, own: list[bytes]) -> bool:
    """Whether the batch's own lines can change the ticket's real-time item.

    The item holds the state "now" reads (status, group, agent, queue start),
    which messages never change; skipping their batches is what keeps the
    DynamoDB cost per event low. The batch that brought any other event
    writes, and views only grow, so the item with the highest version is
    always right. Conflicting variants of one event id are rare enough to
    always write. A view without a creation is never written: the real-time
    view shows no partial ticket, and the creation's own batch will write.
    """
    if r.partial:
        return False
    return conflicting or any(orjson.loads(line)["type"] != "message_sent" for line in own)


Failure = tuple[str, BaseException]  # ticket id, why it could not be evaluated


def enrich(
    tenant: str, lines: list[tuple[bytes, bytes]], own: set[tuple[bytes, bytes]]
) -> tuple[list[dict[str, Any]], list[Failure]]:
    """Records of every ticket of the batch, and the tickets that failed on their own."""
    by_ticket: dict[bytes, list[bytes]] = defaultdict(list)
    for token, event in lines:
        by_ticket[token].append(event)
    own_by_ticket: dict[bytes, list[bytes]] = defaultdict(list)
    for token, event in own:
        own_by_ticket[token].append(event)
    records = []
    failed: list[Failure] = []
    for token, variants in sorted(by_ticket.items()):
        ticket_id = orjson.loads(token)
        try:
            events, version = dedupe(variants)
            r = evaluate(events)
            record = ticket_record(tenant, ticket_id, version, r)
            # Fewer events than variants: some event id came with differing content.
            record["realtime"] = changes_realtime(r, len(events) != version, own_by_ticket[token])
        except Exception as exc:  # one ticket never holds back the others
            failed.append((ticket_id, exc))
            continue
        records.append(record)
    return records, failed


async def handle(deps: EnricherDeps, key: str) -> None:
    tenant, name = expect_key(key, CONSOLIDATED)
    lines = list(decode_lines(await get_bytes(deps.s3, deps.bucket, key)))
    own_key = stage_key(FILTERED, tenant, batch_of(name))
    try:
        own = set(decode_lines(await get_bytes(deps.s3, deps.bucket, own_key)))
    except ObjectMissingError:  # a replay (telemetry rebuild), or expired: all lines are
        own = set(lines)  # its own, which can only mark more tickets for the real-time view
    out_key = stage_key(ENRICHED, tenant, name)
    # CPU-bound: off the event loop, so other messages' heartbeats keep their beat.
    records, failed = await asyncio.to_thread(enrich, tenant, lines, own)
    if failed:
        parked = [{"reason": reason_of(exc), "ticket_id": t} for t, exc in failed]
        await park(deps.s3, deps.bucket, "enricher", tenant, name, parked)
    await put_bytes(deps.s3, deps.bucket, out_key, encode_ndjson(records))
    await deps.sns.publish(
        TopicArn=deps.topic_arn,
        Message=orjson.dumps({"keys": [out_key]}).decode(),
        MessageAttributes={"tenant_id": {"DataType": "String", "StringValue": tenant}},
    )
