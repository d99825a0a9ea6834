"""Sans-IO framing: bytes of one file → records with their spans (single line or multi-line).

The framer is fed consecutive chunks of a file with their offsets and returns complete records as
``(data, start, end)``. It holds an unterminated tail until more bytes come or ``flush()`` is
called (idle timeout, rotation, --once). A record longer than ``max_record_bytes`` is cut and ends
with the terminator; only the head of such a line is kept in memory, so a 10 MiB line costs at
most one record of memory. Records keep their trailing ``\\n`` (and a ``\\r`` before it), as AWS.
"""

from __future__ import annotations

import re

Framed = tuple[bytes, int, int]


class Framer:
    """Splits one file's bytes into records; ``consumed`` is where the held bytes begin."""

    __slots__ = (
        "_held",
        "_held_start",
        "_max",
        "_multiline",
        "_overflow",
        "_record",
        "_record_end",
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
        return len(self._held) + sum(map(len, self._record))

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
            out += self._post([(self._cut(self._held), self._held_start, end)])
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
        out += self._post(self._frame_lines(complete.split(b"\n"), base))
        if last_nl + 1 < len(data):
            self._hold(data[last_nl + 1 :])
        return out

    def flush(self) -> list[Framed]:
        """Emit what is held: the unterminated last line and the pending multi-line record."""
        out: list[Framed] = []
        if self._held or self._overflow:
            start = self._held_start
            end = self.next_offset
            data = self._cut(self._held) if self._overflow else self._held
            self._held, self._held_start, self._overflow = b"", end, 0
            out += self._post([(data, start, end)])
        if self._record:
            out.append(self._join(self._record, self._record_start, self._record_end))
            self._record = []
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

    def _frame_lines(self, parts: list[bytes], base: int) -> list[Framed]:
        """``parts`` is ``complete.split(b"\\n")``: the last element is the empty tail."""
        out: list[Framed] = []
        pos = base
        limit = self._max - 1
        for i in range(len(parts) - 1):
            line = parts[i]
            end = pos + len(line) + 1
            if len(line) > limit:
                out.append((self._cut(line + b"\n"), pos, end))
            else:
                out.append((line + b"\n", pos, end))
            pos = end
        return out

    def _post(self, framed: list[Framed]) -> list[Framed]:
        if self._skip:
            n = min(self._skip, len(framed))
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
        record = self._record
        for data, start, end in lines:
            if record and match(data):
                out.append(self._join(record, self._record_start, self._record_end))
                record = []
            if not record:
                self._record_start = start
            record.append(data)
            self._record_end = end
        self._record = record
        return out

    def _join(self, lines: list[bytes], start: int, end: int) -> Framed:
        data = b"".join(lines)
        if len(data) > self._max:
            data = self._cut(data)
        return (data, start, end)
