"""Batcher.take cuts the queue's head exactly as the record and byte limits say, however it measures."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline.batching import KEY_OVERHEAD, Batcher
from agent.records import Record


def expected_counts(sizes: list[int], max_records: int, max_bytes: int) -> list[int]:
    """The batch sizes the limits give, measured over the whole head every time (the definition)."""
    counts = []
    while sizes:
        ends = list(accumulate(s + KEY_OVERHEAD for s in sizes[:max_records]))
        if len(sizes) <= max_records and sum(s + KEY_OVERHEAD for s in sizes) <= max_bytes:
            count = len(sizes)
        else:
            count = max(1, bisect_right(ends, max_bytes))
        counts.append(count)
        sizes = sizes[count:]
    return counts


@settings(max_examples=200, deadline=None)
@given(
    # mostly similar sizes with outliers: the average predicts the cut badly now and then
    sizes=st.lists(
        st.one_of(st.integers(150, 250), st.integers(0, 5), st.integers(2_000, 60_000)),
        min_size=1,
        max_size=3_000,
    ),
    max_records=st.integers(1, 4_000),
    max_bytes=st.integers(1, 400_000),
    ascending=st.booleans(),  # small records ahead of large ones: the average predicts too few
)
def test_take_cuts_where_the_whole_head_would(
    sizes: list[int], max_records: int, max_bytes: int, ascending: bool
) -> None:
    if ascending:
        sizes = sorted(sizes)
    batcher = Batcher(max_records=500, max_bytes=1 << 20, max_age=1.0, clock=lambda: 0.0)
    records = [Record(b"x" * s, None, i, i + 1) for i, s in enumerate(sizes)]
    batcher.add(records)
    taken = []
    while batcher:
        batch = batcher.take(max_records, max_bytes)
        taken.append(len(batch))
        assert batch[0] is records[sum(taken) - len(batch)]  # FIFO, nothing skipped
    assert taken == expected_counts(sizes, max_records, max_bytes)
    assert batcher.bytes == 0


def test_a_group_commit_of_typical_lines_takes_what_four_mib_hold() -> None:
    """The P1 shape: 60,000 queued 200-byte lines, taken as 50,000 records or 4 MiB."""
    batcher = Batcher(max_records=500, max_bytes=1 << 20, max_age=1.0, clock=lambda: 0.0)
    batcher.add([Record(b"y" * 200, None, i, i + 1) for i in range(60_000)])
    assert len(batcher.take(50_000, 4 * 1024 * 1024)) == 4 * 1024 * 1024 // 240
    assert len(batcher) == 60_000 - 4 * 1024 * 1024 // 240


def test_small_records_ahead_of_large_ones_are_all_taken() -> None:
    """The queue's average (inflated by large records at its tail) predicts too short a cut."""
    batcher = Batcher(max_records=500, max_bytes=1 << 20, max_age=1.0, clock=lambda: 0.0)
    batcher.add([Record(b"s" * 10, None, i, i + 1) for i in range(10_000)])
    batcher.add([Record(b"L" * 50_000, None, i, i + 1) for i in range(100)])
    assert len(batcher.take(50_000, 400_000)) == 400_000 // (10 + KEY_OVERHEAD)
