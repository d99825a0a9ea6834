"""Batcher.take cuts the queue's head exactly as the record and byte limits say, however the
records come in spans, and a span cut in two still waits for its acknowledgement in file order."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline.batching import KEY_OVERHEAD, Batcher
from agent.records import Span
from agent.tailing.tailer import FileAcks
from tests.support.spans import file_acks


def spans_of(sizes: list[int], span_lengths: list[int]) -> tuple[FileAcks, list[Span]]:
    """Records of ``sizes`` bytes (each starting at its index), in spans of the given lengths
    (cycled), registered with one file as the reader registers them."""
    acks = file_acks()
    spans, i, turn = [], 0, 0
    while i < len(sizes):
        n = span_lengths[turn % len(span_lengths)]
        turn += 1
        part = sizes[i : i + n]
        span = Span([b"x" * s for s in part], list(range(i, i + len(part) + 1)), acks)
        acks.register(span)
        spans.append(span)
        i += len(part)
    return acks, spans


def flat(spans: list[Span]) -> list[tuple[int, int]]:
    return [(start, end) for span in spans for _d, start, end in _lines(span)]


def _lines(span: Span) -> list[tuple[bytes, int, int]]:
    o = span.offsets
    return list(zip(span.datas, o[:-1], o[1:], strict=True))


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
    span_lengths=st.lists(st.integers(1, 700), min_size=1, max_size=5),
)
def test_take_cuts_where_the_whole_head_would(
    sizes: list[int], max_records: int, max_bytes: int, ascending: bool, span_lengths: list[int]
) -> None:
    if ascending:
        sizes = sorted(sizes)
    batcher = Batcher(max_records=500, max_bytes=1 << 20, max_age=1.0, clock=lambda: 0.0)
    acks, spans = spans_of(sizes, span_lengths)
    for span in spans:
        batcher.add(span)
    taken: list[int] = []
    for_sink = []
    while batcher:
        batch = batcher.take(max_records, max_bytes)
        lines = flat(batch)
        taken.append(len(lines))
        # FIFO, nothing skipped: the batch starts where the previous one ended
        assert lines[0][0] == sum(taken) - len(lines)
        for_sink += batch
    assert taken == expected_counts(sizes, max_records, max_bytes)
    assert batcher.bytes == 0
    # spans cut in two wait for acknowledgement in file order, each exactly once
    assert list(acks.pending) == for_sink
    assert [s.start for s in for_sink] == [0] + [s.end for s in for_sink[:-1]]
    for span in for_sink:
        span.acked = True
        acks.advance()
    assert acks.checkpoint == len(sizes) and not acks.pending


def test_a_group_commit_of_typical_lines_takes_what_four_mib_hold() -> None:
    """The P1 shape: 60,000 queued 200-byte lines in spans of a read (~5,000), taken as 50,000
    records or 4 MiB."""
    batcher = Batcher(max_records=500, max_bytes=1 << 20, max_age=1.0, clock=lambda: 0.0)
    for span in spans_of([200] * 60_000, [5_000])[1]:
        batcher.add(span)
    assert len(flat(batcher.take(50_000, 4 * 1024 * 1024))) == 4 * 1024 * 1024 // 240
    assert len(batcher) == 60_000 - 4 * 1024 * 1024 // 240


def test_small_records_ahead_of_large_ones_are_all_taken() -> None:
    """Small records ahead of large ones: the cut falls where the bytes say, not before."""
    batcher = Batcher(max_records=500, max_bytes=1 << 20, max_age=1.0, clock=lambda: 0.0)
    for span in spans_of([10] * 10_000 + [50_000] * 100, [10_000, 100])[1]:
        batcher.add(span)
    assert len(flat(batcher.take(50_000, 400_000))) == 400_000 // (10 + KEY_OVERHEAD)


def test_a_span_cut_by_a_batch_is_acknowledged_in_two_parts() -> None:
    """The head of a cut span, once delivered, moves the checkpoint to the cut, not past it."""
    batcher = Batcher(max_records=3, max_bytes=1 << 20, max_age=1.0, clock=lambda: 0.0)
    acks, [span] = spans_of([1] * 5, [5])
    batcher.add(span)
    [head] = batcher.take()
    assert (head.start, head.end, span.start, span.end) == (0, 3, 3, 5)
    head.acked = True
    acks.advance()
    assert acks.checkpoint == 3
