"""Sans-IO framing: bytes of one file → records with their spans (single line or multi-line).

The framer is fed consecutive chunks of a file with their offsets and returns the complete records
as one ``Framed``: their data and their contiguous offsets (what becomes a span, records.py), never
an object per record beyond its bytes; iterating it gives ``(data, start, end)``. It holds an unterminated tail until more bytes come or ``flush()`` is
called (idle timeout, rotation, --once). A record longer than ``max_record_bytes`` is cut and ends
with the terminator; only the head of such a line is kept in memory, so a 10 MiB line costs at
most one record of memory. Records keep their trailing ``\\n`` (and a ``\\r`` before it), as AWS.

Multi-line records (``multiLineStartPattern``) are bounded the same way. Once a record reaches
``max_record_bytes``, only its head is kept; every further continuation line is dropped (counted
in ``bytes_discarded``) up to the next start line, or to ``flush()``. The record is then emitted
cut, ending with the terminator (counted in ``truncated``), and its span still runs to the end of
the last dropped line: acknowledging it moves the checkpoint past the dropped bytes, and not one
byte earlier, so a restart neither re-sends the head nor skips a following record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import accumulate

Line = tuple[bytes, int, int]


class Framed:
    """Records framed from one file: record ``i`` is ``datas[i]`` at ``[offsets[i], offsets[i+1])``.

    The records are contiguous (every byte between the first start and the last end belongs to
    one of them), so ``offsets`` has one more item than ``datas`` (none when there is no record).
    """

    __slots__ = ("datas", "offsets")

    def __init__(self, datas: list[bytes] | None = None, offsets: list[int] | None = None) -> None:
        self.datas = [] if datas is None else datas
        self.offsets = [] if offsets is None else offsets

    @classmethod
    def of(cls, lines: list[Line]) -> Framed:
        """From ``(data, start, end)`` triples that follow one another."""
        if not lines:
            return cls()
        return cls([d for d, _s, _e in lines], [s for _d, s, _e in lines] + [lines[-1][2]])

    def __len__(self) -> int:
        return len(self.datas)

    def __iter__(self) -> Iterator[Line]:
        o = self.offsets
        return zip(self.datas, o, o[1:], strict=False)

    def __repr__(self) -> str:
        return f"Framed({list(self)!r})"

    def extend(self, other: Framed) -> None:
        """Append records that follow these."""
        if not other.datas:
            return
        if not self.datas:
            self.datas, self.offsets = other.datas, other.offsets
            return
        if other.offsets[0] != self.offsets[-1]:
            raise ValueError(f"records at {other.offsets[0]} do not follow {self.offsets[-1]}")
        self.datas += other.datas
        self.offsets += other.offsets[1:]


class Framer:
    """Splits one file's bytes into records; ``consumed`` is where the held bytes begin."""

    __slots__ = (
        "_cut_lines",
        "_held",
        "_held_start",
        "_max",
        "_multiline",
        "_overflow",
        "_record",
        "_record_cut",
        "_record_end",
        "_record_full",
        "_record_size",
        "_record_start",
        "_skip",
        "_terminator",
        "bytes_discarded",
        "skipped_lines",
        "truncated",
    )

    def __init__(
        self,
        *,
        start: int = 0,
        max_record_bytes: int = 1024 * 1024,
        terminator: bytes = b"\n",
        multiline: re.Pattern[bytes] | None = None,
        skip_header_lines: int = 0,
    ) -> None:
        if len(terminator) >= max_record_bytes:
            raise ValueError("the truncation terminator must be shorter than the record limit")
        self._max = max_record_bytes
        self._terminator = terminator
        self._multiline = multiline
        self._skip = skip_header_lines if start == 0 else 0
        self._held = b""  # the head of the line being read (at most _max bytes)
        self._held_start = start
        self._overflow = 0  # bytes of that line dropped beyond _held
        self._record: list[bytes] = []  # multi-line: lines of the record being built
        self._record_size = 0  # their bytes (never more than _max)
        self._record_full = False  # the record reached _max: later lines are dropped
        # multi-line: start offsets of lines cut on their own, and whether the record holds one;
        # such a record is counted in ``truncated`` once, not once per cut
        self._cut_lines: set[int] = set()
        self._record_cut = False
        self._record_start = start
        self._record_end = start
        self.truncated = 0
        self.bytes_discarded = 0
        self.skipped_lines = 0

    @property
    def consumed(self) -> int:
        """Offset up to which every byte belongs to an emitted (or skipped) record."""
        if self._record:
            return self._record_start
        return self._held_start

    @property
    def next_offset(self) -> int:
        """Where the next chunk must start."""
        return self._held_start + len(self._held) + self._overflow

    @property
    def held_bytes(self) -> int:
        return len(self._held) + self._record_size

    def has_pending(self) -> bool:
        return bool(self._held) or self._overflow > 0 or bool(self._record)

    def feed(self, data: bytes, offset: int) -> Framed:
        """Add the bytes read at ``offset``; return the records they complete."""
        if offset != self.next_offset:
            raise ValueError(
                f"chunk at {offset} does not follow the previous one ({self.next_offset})"
            )
        out = Framed()
        if self._overflow:
            first_nl = data.find(b"\n")
            if first_nl < 0:
                self._overflow += len(data)
                self.bytes_discarded += len(data)
                return out
            # the over-long line ends here: emit its cut head, drop the rest
            self.bytes_discarded += first_nl + 1
            end = offset + first_nl + 1
            out.extend(
                self._post([self._cut_line(self._held, self._held_start)], [self._held_start, end])
            )
            self._held, self._held_start, self._overflow = b"", end, 0
            data, offset = data[first_nl + 1 :], end
            if not data:
                return out
        if data.rfind(b"\n") < 0:
            self._hold(data)
            return out
        # The lines are cut from ``data`` itself (no copy of the chunk); a held head joins the
        # first, an unterminated last piece is held.
        if b"\r" in data:
            # splitlines would also end lines at a lone \r: split at \n only
            lines = data.split(b"\n")
            tail = lines.pop()
            lines = [line + b"\n" for line in lines]
        else:
            lines = data.splitlines(keepends=True)
            tail = b"" if data.endswith(b"\n") else lines.pop()
        base = offset
        if self._held:
            base = self._held_start
            lines[0] = self._held + lines[0]
        self._held = b""
        framed = self._frame_lines(lines, base)
        self._held_start = framed.offsets[-1]
        out.extend(self._post(framed.datas, framed.offsets))
        if tail:
            self._hold(tail)
        return out

    def flush(self) -> Framed:
        """Emit what is held: the unterminated last line and the pending multi-line record."""
        out = Framed()
        if self._held or self._overflow:
            start = self._held_start
            end = self.next_offset
            data = self._cut_line(self._held, start) if self._overflow else self._held
            self._held, self._held_start, self._overflow = b"", end, 0
            out.extend(self._post([data], [start, end]))
        if self._record:
            out.extend(Framed.of([self._emit_record()]))
        return out

    # --- internals ------------------------------------------------------------------------------

    def _hold(self, data: bytes) -> None:
        held = self._held + data
        if len(held) > self._max:
            dropped = len(held) - self._max
            self._overflow += dropped
            self.bytes_discarded += dropped
            held = held[: self._max]
        self._held = held

    def _cut(self, data: bytes) -> bytes:
        self.truncated += 1
        return data[: self._max - len(self._terminator)] + self._terminator

    def _cut_line(self, data: bytes, start: int) -> bytes:
        """A line over the limit cut; in a multi-line record, counted with its record."""
        if self._multiline is None:
            return self._cut(data)
        self._cut_lines.add(start)
        return data[: self._max - len(self._terminator)] + self._terminator

    def _frame_lines(self, lines: list[bytes], base: int) -> Framed:
        """Complete lines (each ending with ``\\n``) from ``base``: lines over the limit cut."""
        offsets = list(accumulate(map(len, lines), initial=base))
        if max(map(len, lines)) > self._max:
            lines = [
                self._cut_line(line, start) if len(line) > self._max else line
                for line, start in zip(lines, offsets, strict=False)
            ]
        return Framed(lines, offsets)

    def _post(self, datas: list[bytes], offsets: list[int]) -> Framed:
        if self._skip:
            n = min(self._skip, len(datas))
            for start in offsets[:n]:
                self._cut_lines.discard(start)
            self._skip -= n
            self.skipped_lines += n
            datas, offsets = datas[n:], offsets[n:]
            if not datas:
                return Framed()
        if self._multiline is None or not datas:
            return Framed(datas, offsets)
        return Framed.of(self._group(list(zip(datas, offsets, offsets[1:], strict=False))))

    def _group(self, lines: list[Line]) -> list[Line]:
        assert self._multiline is not None
        match = self._multiline.match
        out: list[Line] = []
        for data, start, end in lines:
            if self._record and match(data):
                out.append(self._emit_record())
            if not self._record:
                self._record_start = start
            self._record_end = end
            if start in self._cut_lines:
                self._cut_lines.discard(start)
                self._record_cut = True
            room = self._max + 1 - self._record_size  # one byte over the limit marks the cut
            if self._record_full:
                self.bytes_discarded += len(data)
            elif len(data) < room:
                self._record.append(data)
                self._record_size += len(data)
            else:
                self._record.append(data[:room])
                self._record_size += room
                self._record_full = True
                self.bytes_discarded += len(data) - room
        return out

    def _emit_record(self) -> Line:
        data = b"".join(self._record)
        if len(data) > self._max:
            data = self._cut(data)
        elif self._record_cut:
            self.truncated += 1
        framed = (data, self._record_start, self._record_end)
        self._record, self._record_size, self._record_full = [], 0, False
        self._record_cut = False
        return framed
