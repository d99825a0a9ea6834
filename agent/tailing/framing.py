"""Sans-IO framing: bytes of one file → records with their spans (single line or multi-line).

The framer is fed consecutive chunks of a file with their offsets and returns complete records as
``(data, start, end)``. It holds an unterminated tail until more bytes come or ``flush()`` is
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
from itertools import accumulate

Framed = tuple[bytes, int, int]


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

    def feed(self, data: bytes, offset: int) -> list[Framed]:
        """Add the bytes read at ``offset``; return the records they complete."""
        if offset != self.next_offset:
            raise ValueError(
                f"chunk at {offset} does not follow the previous one ({self.next_offset})"
            )
        out: list[Framed] = []
        if self._overflow:
            first_nl = data.find(b"\n")
            if first_nl < 0:
                self._overflow += len(data)
                self.bytes_discarded += len(data)
                return out
            # the over-long line ends here: emit its cut head, drop the rest
            self.bytes_discarded += first_nl + 1
            end = offset + first_nl + 1
            out += self._post(
                [(self._cut_line(self._held, self._held_start), self._held_start, end)]
            )
            self._held, self._held_start, self._overflow = b"", end, 0
            data, offset = data[first_nl + 1 :], end
            if not data:
                return out
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            self._hold(data)
            return out
        if self._held:
            base = self._held_start
            complete = self._held + data[: last_nl + 1]
        else:
            base = offset
            complete = data[: last_nl + 1] if last_nl + 1 < len(data) else data
        self._held = b""
        self._held_start = base + len(complete)
        out += self._post(self._frame_lines(complete, base))
        if last_nl + 1 < len(data):
            self._hold(data[last_nl + 1 :])
        return out

    def flush(self) -> list[Framed]:
        """Emit what is held: the unterminated last line and the pending multi-line record."""
        out: list[Framed] = []
        if self._held or self._overflow:
            start = self._held_start
            end = self.next_offset
            data = self._cut_line(self._held, start) if self._overflow else self._held
            self._held, self._held_start, self._overflow = b"", end, 0
            out += self._post([(data, start, end)])
        if self._record:
            out.append(self._emit_record())
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

    def _frame_lines(self, complete: bytes, base: int) -> list[Framed]:
        """``complete`` ends with ``\\n``: one record per line, each keeping its ``\\n``."""
        if b"\r" in complete:
            # splitlines would also end lines at a lone \r: split at \n only
            lines = [line + b"\n" for line in complete.split(b"\n")[:-1]]
        else:
            lines = complete.splitlines(keepends=True)
        if max(map(len, lines)) > self._max:
            ends = list(
                accumulate(
                    map(len, complete.split(b"\n")[:-1]), lambda e, n: e + n + 1, initial=base
                )
            )
            lines = [
                self._cut_line(line, start) if len(line) > self._max else line
                for line, start in zip(lines, ends, strict=False)
            ]
        else:
            ends = list(accumulate(map(len, lines), initial=base))
        return list(zip(lines, ends[:-1], ends[1:], strict=True))

    def _post(self, framed: list[Framed]) -> list[Framed]:
        if self._skip:
            n = min(self._skip, len(framed))
            for _data, start, _end in framed[:n]:
                self._cut_lines.discard(start)
            self._skip -= n
            self.skipped_lines += n
            framed = framed[n:]
        if self._multiline is None or not framed:
            return framed
        return self._group(framed)

    def _group(self, lines: list[Framed]) -> list[Framed]:
        assert self._multiline is not None
        match = self._multiline.match
        out: list[Framed] = []
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

    def _emit_record(self) -> Framed:
        data = b"".join(self._record)
        if len(data) > self._max:
            data = self._cut(data)
        elif self._record_cut:
            self.truncated += 1
        framed = (data, self._record_start, self._record_end)
        self._record, self._record_size, self._record_full = [], 0, False
        self._record_cut = False
        return framed
