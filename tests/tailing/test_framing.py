"""Framing: bytes → records with spans, independent of how the bytes were chunked."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from agent.tailing.framing import Framer


def feed_all(framer: Framer, data: bytes, cuts: list[int]) -> list[tuple[bytes, int, int]]:
    out = []
    pos = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        if cut <= pos or cut > len(data):
            continue
        out += framer.feed(data[pos:cut], pos)
        pos = cut
    return out


class TestSingleLine:
    def test_lines_keep_newline_and_cr(self) -> None:
        """Records end at \\n; a trailing \\r stays, as AWS does."""
        f = Framer()
        assert list(f.feed(b"a\r\nbb\n", 0)) == [(b"a\r\n", 0, 3), (b"bb\n", 3, 6)]

    def test_unterminated_tail_is_held_until_flush(self) -> None:
        """A line without \\n is held; flush emits it with its span."""
        f = Framer()
        assert list(f.feed(b"a\nhalf", 0)) == [(b"a\n", 0, 2)]
        assert f.consumed == 2
        assert list(f.feed(b"-line", 6)) == []
        assert list(f.flush()) == [(b"half-line", 2, 11)]
        assert f.consumed == 11

    def test_long_line_is_cut_with_terminator_and_counted(self) -> None:
        """A 10 MiB line becomes one record of the limit ending with the terminator; memory stays bounded."""
        f = Framer(max_record_bytes=100, terminator=b"...\n")
        big = b"x" * (10 * 1024 * 1024)
        out = []
        pos = 0
        for i in range(0, len(big), 65536):
            chunk = big[i : i + 65536]
            out += f.feed(chunk, pos)
            pos += len(chunk)
            assert f.held_bytes <= 100
        out += f.feed(b"\nnext\n", pos)
        assert out[0] == (b"x" * 96 + b"...\n", 0, len(big) + 1)
        assert out[1] == (b"next\n", len(big) + 1, len(big) + 6)
        assert f.truncated == 1

    def test_skip_header_lines_only_from_zero(self) -> None:
        """skipHeaderLines applies to a file read from offset 0 only."""
        assert list(Framer(skip_header_lines=1).feed(b"h\na\n", 0)) == [(b"a\n", 2, 4)]
        assert list(Framer(start=2, skip_header_lines=1).feed(b"a\n", 2)) == [(b"a\n", 2, 4)]

    def test_rejects_a_gap(self) -> None:
        """A chunk that does not follow the previous one is a bug, not data."""
        f = Framer()
        f.feed(b"a\n", 0)
        try:
            f.feed(b"b\n", 5)
        except ValueError:
            return
        raise AssertionError("gap accepted")

    @given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
    def test_chunking_does_not_change_records(self, data: bytes, cuts: list[int]) -> None:
        """Any split of the input gives the same records, and the records tile the input exactly."""
        whole = Framer()
        expected = list(whole.feed(data, 0)) + list(whole.flush())
        chunked = Framer()
        got = feed_all(chunked, data, cuts) + list(chunked.flush())
        assert got == expected
        assert b"".join(r[0] for r in got) == data
        pos = 0
        for _, start, end in got:
            assert start == pos
            pos = end
        assert pos == len(data)


class TestMultiLine:
    def test_records_start_at_matching_lines(self) -> None:
        """Continuation lines join the record that the last start line opened."""
        f = Framer(multiline=re.compile(rb"\d{4}-"))
        out = list(f.feed(b"2024-1 boom\n  at a\n  at b\n2024-2 ok\n", 0))
        assert out == [(b"2024-1 boom\n  at a\n  at b\n", 0, 26)]
        assert f.consumed == 26
        assert list(f.flush()) == [(b"2024-2 ok\n", 26, 36)]

    @given(
        st.lists(st.sampled_from([b"S1\n", b" c\n", b"S2 x\n", b"\n"]), max_size=30),
        st.lists(st.integers(0, 120), max_size=6),
    )
    def test_multiline_tiles_the_input(self, lines: list[bytes], cuts: list[int]) -> None:
        """Multi-line records, however chunked, cover every byte once and in order."""
        data = b"".join(lines)
        f = Framer(multiline=re.compile(rb"S"))
        got = feed_all(f, data, cuts) + list(f.flush())
        assert b"".join(r[0] for r in got) == data
        for data_, start, end in got:
            assert data[start:end] == data_


class TestMultiLineLimit:
    """A record growing past the limit is cut; its other lines are dropped up to the next start."""

    START = re.compile(rb"S")

    def test_cut_at_the_limit_rest_dropped_span_covers_it_all(self) -> None:
        """The cut record ends with the terminator and spans every byte up to the next start line."""
        f = Framer(multiline=self.START, max_record_bytes=16, terminator=b"~\n")
        data = b"S head\n" + b" cont\n" * 5 + b"S next\n"
        out = list(f.feed(data, 0))
        next_start = len(data) - len(b"S next\n")
        assert out == [(b"S head\n cont\n ~\n", 0, next_start)]
        assert (f.truncated, f.bytes_discarded) == (1, 5 * 6 + 7 - 17)
        assert f.consumed == next_start  # the checkpoint may move past the dropped lines
        assert list(f.flush()) == [(b"S next\n", next_start, len(data))]

    def test_a_record_exactly_at_the_limit_is_not_cut(self) -> None:
        f = Framer(multiline=self.START, max_record_bytes=13, terminator=b"~\n")
        out = list(f.feed(b"S head\n cont\nS\n", 0))
        assert out == [(b"S head\n cont\n", 0, 13)]
        assert (f.truncated, f.bytes_discarded) == (0, 0)

    def test_flush_emits_the_cut_record_with_the_whole_span(self) -> None:
        """Idle, rotation or --once: the pending cut record goes out covering what was read."""
        f = Framer(multiline=self.START, max_record_bytes=16, terminator=b"~\n")
        data = b"S head\n" + b" cont\n" * 100
        assert list(f.feed(data, 0)) == []
        assert list(f.flush()) == [(b"S head\n cont\n ~\n", 0, len(data))]
        assert f.consumed == f.next_offset == len(data)
        # later continuation lines (no start line yet) make a record of their own
        assert list(f.feed(b" more\n", len(data))) == []
        assert list(f.flush()) == [(b" more\n", len(data), len(data) + 6)]

    def test_memory_stays_within_one_record_however_long_the_run(self) -> None:
        """300k continuation lines in 64 KiB chunks: never more than the limit (+ a partial line) held."""
        limit = 1024
        f = Framer(multiline=self.START, max_record_bytes=limit)
        chunk = b" continuation line of a stack trace\n" * 2000
        offset = 0
        f.feed(b"S start\n", 0)
        offset = 8
        peak = 0
        for _ in range(150):
            for i in range(0, len(chunk), 65536):
                piece = chunk[i : i + 65536]
                assert list(f.feed(piece, offset)) == []
                offset += len(piece)
                peak = max(peak, f.held_bytes)
        assert peak <= 2 * limit + 1
        [(record, start, end)] = f.flush()
        assert (len(record), start, end) == (limit, 0, offset)

    @given(
        st.lists(st.sampled_from([b"S1\n", b" cc\n", b"S2 xx\n", b"\n", b" c" * 9 + b"\n"])),
        st.lists(st.integers(0, 400), max_size=6),
    )
    def test_spans_still_tile_the_input(self, lines: list[bytes], cuts: list[int]) -> None:
        """With cuts, spans still cover every byte once; each record is its span's head, bounded."""
        data = b"".join(lines)
        f = Framer(multiline=self.START, max_record_bytes=24, terminator=b"~\n")
        got = feed_all(f, data, cuts) + list(f.flush())
        pos = 0
        for record, start, end in got:
            assert start == pos
            pos = end
            assert len(record) <= 24
            if record.endswith(b"~\n") and end - start > 24:
                assert record[:-2] == data[start : start + 22]
            else:
                assert record == data[start:end]
        assert pos == len(data)

    def test_a_record_holding_an_over_long_line_is_counted_once(self) -> None:
        """The line is cut, then its record: one truncated record, one count."""
        f = Framer(multiline=self.START, max_record_bytes=16, terminator=b"~\n")
        out = list(f.feed(b"S head\n " + b"x" * 40 + b"\nS next\n", 0))
        assert out == [(b"S head\n xxxxxx~\n", 0, 49)]
        assert f.truncated == 1

    @given(
        st.lists(st.sampled_from([b"S1\n", b" cc\n", b"S" * 30 + b"\n", b" c" * 20 + b"\n"])),
        st.lists(st.integers(0, 400), max_size=6),
    )
    def test_truncated_counts_the_records_cut(self, lines: list[bytes], cuts: list[int]) -> None:
        """``truncated`` (records_truncated) is the number of records shorter than their span."""
        data = b"".join(lines)
        f = Framer(multiline=self.START, max_record_bytes=24, terminator=b"~\n")
        got = feed_all(f, data, cuts) + list(f.flush())
        assert f.truncated == sum(1 for record, start, end in got if end - start > 24)
