"""The ticket store's pure parts: the file format, bloom filters, routing, plans."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.consolidator.manifest import ColdFile, ColdRun, Manifest
from services.consolidator.partition import Listing, Policy, plan
from services.consolidator.reader import RunIndex, _ranges
from services.consolidator.runs import (
    CLOSED,
    ZLIB,
    Ticket,
    bloom_of,
    parse_file,
    parse_footer,
    tickets_of,
    token_hashes,
    union,
    write_file,
)
from services.consolidator.s3io import Listed
from services.consolidator.state import TenantState

EVENT = b'{"event_id":"%d","occurred_at":"2026-11-20T10:00:0%d.000Z","type":"%s"}'

tickets = st.dictionaries(
    st.text(min_size=1, max_size=12).map(lambda s: f'"{s}"'.encode()),
    st.lists(st.integers(0, 9), min_size=1, max_size=30),
    max_size=300,
)


def ticket_list(drawn: dict[bytes, list[int]]) -> list[Ticket]:
    lines = [(tok, EVENT % (n, n, b"message_sent")) for tok, ns in drawn.items() for n in ns]
    return tickets_of(lines)


@settings(max_examples=60, deadline=None)
@given(drawn=tickets, codec=st.sampled_from([0, ZLIB]))
def test_a_file_round_trips_and_its_index_finds_every_ticket(
    drawn: dict[bytes, list[int]], codec: int
) -> None:
    written = ticket_list(drawn)
    data, writer = write_file(written, codec)
    footer, blocks = parse_file(data)
    assert [t for b in blocks for t in b] == written == [t for b in writer.blocks for t in b]
    assert footer.tickets == len(written) and writer.stats.lines == footer.lines
    if written:
        tokens = [t.token for t in written]
        assert footer.may_hold(*token_hashes(tokens)).all()  # no false negatives
        for t in written:
            assert t in blocks[footer.block_of(t.token)]


def test_big_files_have_many_blocks_and_few_false_positives() -> None:
    lines = [(b'"t%06d"' % i, EVENT % (i, i % 10, b"message_sent") * 4) for i in range(20_000)]
    data, _ = write_file(tickets_of(lines))
    footer, _ = parse_file(data)
    assert len(footer.firsts) > 50
    others = [b'"u%06d"' % i for i in range(100_000)]
    assert footer.may_hold(*token_hashes(others)).sum() <= 10  # about 1 in 100,000


def test_summaries_and_unions_follow_the_events() -> None:
    a, b = (
        ticket_list({b'"t"': [1, 2]}),
        tickets_of(
            [(b'"t"', EVENT % (2, 2, b"message_sent")), (b'"t"', EVENT % (3, 3, b"ticket_closed"))]
        ),
    )
    merged = union([a[0], b[0]])
    assert merged.lines() == sorted({*a[0].lines(), *b[0].lines()})
    assert merged.flags & CLOSED and not a[0].flags & CLOSED
    assert merged.last_ms == b[0].last_ms > a[0].last_ms


def test_a_run_index_checks_every_file_of_a_run_at_once() -> None:
    files, footers = [], []
    for f in range(4):
        written = tickets_of([(b'"%d%04d"' % (f, i), EVENT % (i, 1, b"x")) for i in range(500)])
        data, writer = write_file(written, ZLIB)
        footer, _ = parse_file(data)
        footers.append(footer)
        st_ = writer.stats
        files.append(ColdFile(f"k{f}", len(data), 0, 0, st_.first, st_.last, st_.tickets, 1, 1))
    bits = np.array([f.bloom_bits for f in footers], dtype=np.uint64)
    index = RunIndex(
        np.array([f.first for f in files], dtype="S"),
        np.array([f.last for f in files], dtype="S"),
        footers,
        np.concatenate([f.bloom for f in footers]),
        np.concatenate([[0], np.cumsum(bits)[:-1]]).astype(np.uint64),
        bits,
    )
    wanted = [b'"10007"', b'"30499"', b'"29999"', b'"0"', b'"99999"', b'"20250"']
    found = index.candidates(np.array(wanted, dtype="S"), *token_hashes(wanted))
    assert found == {1: [0], 3: [1], 2: [5]}


def test_manifests_round_trip_and_plan_tiered_merges() -> None:
    def run(i: int, raw: int) -> ColdRun:
        return ColdRun(f"r{i}", (ColdFile(f"k{i}", 1, 2, 3, b'"a"', b'"z"', 4, 5, raw),))

    small = Manifest(tuple(run(i, 1000) for i in range(7)))
    assert Manifest.decode(small.encode()) == small
    assert small.merge_plan() == []
    assert len(small.with_run(run(7, 2000)).merge_plan()) == 8
    assert small.with_run(run(7, 10**9)).merge_plan() == []
    assert small.replace({"r0", "r1"}, run(9, 1)) is not None
    assert small.replace({"r0", "gone"}, run(9, 1)) is None


def test_partitions_route_by_the_leading_bits_of_the_hash() -> None:
    state = TenantState(3, {"r0": 1, "r10": 2, "r11": 3})
    tokens = [b'"t%d"' % i for i in range(400)]
    h1, _ = token_hashes(tokens)
    routed = state.route(h1)
    for h, part in zip(h1.tolist(), routed, strict=True):
        bits = format(h, "064b")
        assert bits.startswith(part[1:])
    assert set(routed) == set(state.parts)


def test_minor_merges_take_a_full_size_class_and_majors_everything() -> None:
    policy = Policy(fanout=3, major_min_bytes=500)
    deltas = [Listed(f"p/d-{i}.run", 50) for i in range(3)]
    major = [Listed("p/m-1-00000.run", 900)]
    assert plan(Listing([*deltas[:2], *major], 1, []), policy).kind == "none"
    assert plan(Listing([*deltas, *major], 1, []), policy).inputs == deltas
    big = [Listed(f"p/r-{i}.run", 400) for i in range(2)]
    assert plan(Listing([*big, *major], 1, []), policy).kind == "none"
    assert plan(Listing([*big, Listed("p/d-x.run", 100), *major], 1, []), policy).kind == "major"


def test_minor_merges_tier_runs_not_the_files_a_run_is_cut_into() -> None:
    """Six full files of one run are one run: merging them again (the loop that wrote
    40 MB per 1,000 events in the 30-minute bench-history run) must not be planned."""
    policy = Policy(fanout=3, major_min_bytes=10**9)
    mib = 1024 * 1024

    def run(n: int, files: int) -> list[Listed]:
        return [Listed(f"p/r-{n:013d}-{n:012x}-{i:05d}.run", 8 * mib) for i in range(files)]

    major = [Listed("p/m-1-00000.run", 10**9)]
    assert plan(Listing([*run(1, 6), *major], 1, []), policy).kind == "none"
    three = [*run(1, 2), *run(2, 2), *run(3, 2)]
    assert plan(Listing([*three, *major], 1, []), policy).inputs == three
    old_layout = [Listed(f"p/r-{n:013d}-{n:012x}.run", 16 * mib) for n in range(3)]
    assert plan(Listing([*old_layout, *run(4, 1), *major], 1, []), policy).inputs == old_layout


def test_range_reads_join_the_closest_blocks_first() -> None:
    assert _ranges([1, 2, 3, 10, 11, 30], 4) == [(1, 4), (10, 12), (30, 31)]
    assert _ranges([1, 3, 10, 20, 21, 40], 3) == [(1, 11), (20, 22), (40, 41)]


def test_a_bloom_of_nothing_holds_nothing() -> None:
    bits, data = bloom_of([])
    footer_data = write_file([])[0]
    assert bits == 64 and len(data) == 8
    assert parse_footer(footer_data[:-24]).tickets == 0
