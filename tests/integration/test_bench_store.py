"""The store benchmark's history generator writes what the store itself would.

The same events go (a) through `write_history` and (b) through the real path:
`TicketStore.merge` in time order, compaction after every batch and a major
merge at the end, with the store's clock following the events. Both stores
must hold the same lines, the same tickets hot and the same tickets sealed,
and the generated one must satisfy what the store's own code keeps true.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from functools import partial
from typing import Any

from bench.store_history import DAY_MS, Model, ticket_id, write_history
from services.consolidator.manifest import COLD_BASE_BYTES, COLD_FANOUT, size_class
from services.consolidator.partition import Policy, list_partition
from services.consolidator.runs import token_hashes
from services.consolidator.state import now_ms
from services.consolidator.store import TicketStore, build_store
from shared.aws import Aws
from shared.events import to_ms
from shared.layout import new_batch_id
from tests.integration.helpers import bucket_and_store_table
from tests.integration.test_store import BUCKET, aws_for

POLICY = Policy(retention_ms=DAY_MS, open_retention_ms=2 * DAY_MS, partition_bytes=60_000,
                major_min_bytes=40_000)  # fmt: skip
DAYS, PER_DAY = 4, 60
Lines = dict[bytes, set[bytes]]


def _at(line: bytes) -> str:
    at = line.index(b'"occurred_at":"') + 15
    return line[at : at + 24].decode()


def _ms_of(stamp: str) -> int:
    return to_ms(datetime.fromisoformat(stamp))


async def store_in(aws: Aws, table: str) -> TicketStore:
    await bucket_and_store_table(aws, BUCKET, table)
    return build_store(aws.s3, aws.dynamodb, BUCKET, table, POLICY, 32 << 20)


async def tiers(store: TicketStore, tenant: str) -> tuple[Lines, Lines]:
    """Lines of each ticket in the hot partitions, and in the cold runs."""
    state = await store.state(tenant)
    hot: Lines = {}
    cold: Lines = {}
    for part in state.parts:
        listing = await list_partition(store.io, tenant, part)
        assert listing.mark == state.parts[part]
        for o in listing.objects:
            async for block in store.reader.stream(o.key, o.size):
                for t in block:
                    assert state.route(token_hashes([t.token])[0]) == [part]
                    hot.setdefault(t.token, set()).update(t.lines())
    for run in (await store.reader.manifest(state.manifest)).runs:
        for f, after in itertools.zip_longest(run.files, run.files[1:]):
            assert f.first <= f.last and (after is None or f.last < after.first)
            footer = await store.reader.footer(f.key, f.size, (f.footer_at, f.footer_len))
            async for block in store.reader.stream(f.key, f.size, (f.footer_at, f.footer_len)):
                assert footer.may_hold(*token_hashes([t.token for t in block])).all()
                for t in block:
                    cold.setdefault(t.token, set()).update(t.lines())
    return hot, cold


async def test_the_history_generator_writes_what_the_store_would(moto_url: str) -> None:
    end = now_ms() // DAY_MS * DAY_MS
    tenant = f"gen-{new_batch_id()[-8:]}"
    model = Model(tenant, 3, PER_DAY, end - DAYS * DAY_MS)
    async with aws_for(moto_url) as aws:
        generated = await store_in(aws, "bench-store-generated")
        real = await store_in(aws, "bench-store-real")
        await write_history(generated, model, DAYS, end)  # (a) written directly
        # (b) the same events through the store, in time order, as time passes (another
        # tenant id for the store, the same lines)
        timed: list[tuple[str, bytes, bytes]] = []
        for day, n in itertools.product(range(DAYS), range(PER_DAY)):
            t = model.ticket(day, n)
            timed += [(_at(line), t.token, line) for line in t.lines()]
        timed.sort()
        for i in range(0, len(timed), 40):
            batch = timed[i : i + 40]
            real.compactor.clock = partial(_ms_of, batch[-1][0])
            await real.merge(f"{tenant}-r", new_batch_id(), [(tok, line) for _, tok, line in batch])
            await real.compactor.compact_all(f"{tenant}-r")
        real.compactor.clock = partial(int, end)
        await real.compactor.major(f"{tenant}-r")
        counts: Any = real.compactor.counts
        assert counts["major"] > 2 and counts["sealed lines"] and counts["split"]

        gen_hot, gen_cold = await tiers(generated, tenant)
        real_hot, real_cold = await tiers(real, f"{tenant}-r")
        assert gen_hot.keys() == real_hot.keys() and gen_cold.keys() == real_cold.keys()
        assert gen_hot == real_hot and gen_cold == real_cold
        assert gen_hot and gen_cold and not gen_hot.keys() & gen_cold.keys()

        manifest = await generated.reader.manifest((await generated.state(tenant)).manifest)
        classes = [size_class(r.raw, COLD_BASE_BYTES, COLD_FANOUT) for r in manifest.runs]
        assert all(classes.count(c) < COLD_FANOUT for c in classes)
        # The store reads what was generated: a late event of a sealed ticket finds it.
        old = f'"{ticket_id(3, 0, 5)}"'.encode()
        late = (old, b'{"event_id":"late","type":"message_sent"}')
        view = await generated.merge(tenant, new_batch_id(), [late])
        assert {e for _, e in view} == gen_cold[old] | {late[1]}
