"""The ticket store against the moto server: union of objects, compaction, cache."""

from __future__ import annotations

import contextlib

from services.consolidator.store import ObjectCache, TicketStore
from shared.aws import open_aws
from shared.layout import new_batch_id, store_prefix, ticket_token
from shared.objects import list_keys
from shared.settings import Settings

BUCKET = "telemetry-store-test"


def line(ticket: str, n: int) -> tuple[bytes, bytes]:
    return ticket_token(ticket), b'{"event_id":"%d"}' % n


async def test_merge_returns_every_line_of_touched_tickets_and_fetches_only_new_objects(
    moto_url: str,
) -> None:
    settings = Settings.model_validate(
        {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}
    )
    async with open_aws(settings) as aws:
        with contextlib.suppress(aws.s3.exceptions.BucketAlreadyOwnedByYou):
            await aws.s3.create_bucket(Bucket=BUCKET)
        store = TicketStore(aws.s3, BUCKET, compact_after=4, cache=ObjectCache(1_000))
        gets = lambda: aws.counter.counts[("s3", "GetObject")]  # noqa: E731

        seen = await store.merge("acme", 0, new_batch_id(), [line("a", 1), line("b", 2)])
        assert seen == {line("a", 1), line("b", 2)}
        before = gets()
        seen = await store.merge("acme", 0, new_batch_id(), [line("a", 3)])
        assert seen == {line("a", 1), line("a", 3)}  # b is not touched by this batch
        assert gets() - before == 1  # only the new delta: the first is cached

        for n in range(4, 7):  # the fifth object is one more than compact_after: compaction
            seen = await store.merge("acme", 0, new_batch_id(), [line("a", n)])
        assert seen == {line("a", n) for n in (1, 3, 4, 5, 6)}
        keys = await list_keys(aws.s3, BUCKET, store_prefix("acme", 0))
        assert len(keys) == 1 and "/c-" in keys[0]

        cold = TicketStore(aws.s3, BUCKET, compact_after=4)  # another worker, no cache
        seen = await cold.merge("acme", 0, new_batch_id(), [line("b", 8)])
        assert seen == {line("b", 2), line("b", 8)}
