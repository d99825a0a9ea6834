"""One open file of a flow: reads from an offset through a framer, tracks which spans are acknowledged."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Container

from agent.records import Checkpoint, FileId, Span
from agent.tailing.framing import Framed, Framer
from agent.tailing.identity import digest, head_matches

MIN_READ = 64 * 1024  # bytes asked for at least, when the file is known to have grown


class Truncated(Exception):
    """The file no longer starts with the bytes it was identified by."""


class FileAcks:
    """The contiguous-acknowledgement arithmetic of one file identity.

    Records are registered in file order; the checkpoint is the end of the longest prefix of
    registered records that are all acknowledged — never past one still in flight.

    A copy that continues another file (copytruncate) starts reading where that file was *read*
    to, but records of that file may still be in flight: until they are acknowledged, the copy's
    stored checkpoint is held down to its ``floor``'s, so a crash re-reads them from the copy.
    """

    __slots__ = (
        "checkpoint",
        "dependents",
        "dirty",
        "file_id",
        "floor",
        "flow",
        "path",
        "pending",
        "size",
        "start",
    )

    def __init__(
        self,
        flow: str,
        file_id: FileId,
        path: str,
        checkpoint: int,
        *,
        floor: FileAcks | None = None,
        size: int | None = None,
    ) -> None:
        self.flow = flow
        self.size = size  # the file's size when last seen: stored with the checkpoint
        self.file_id = file_id
        self.path = path
        self.checkpoint = checkpoint
        self.start = checkpoint
        self.pending: deque[Span] = deque()
        self.dirty = False
        self.floor: FileAcks | None = None
        self.dependents: list[FileAcks] = []
        if floor is not None and (floor.pending or floor.checkpoint < checkpoint):
            self.floor = floor
            floor.dependents.append(self)

    def register(self, span: Span) -> None:
        self.pending.append(span)

    def insert_before(self, span: Span, head: Span) -> None:
        """``head`` was cut from the front of ``span``: it waits in its place, before it."""
        pending = self.pending
        pending.insert(pending.index(span), head)

    def advance(self) -> None:
        pending = self.pending
        offset = self.checkpoint
        while pending and pending[0].acked:
            offset = pending.popleft().end
        if pending and pending[0].delivered_to > offset:
            # a span cut into records: its first records delivered count already
            offset = pending[0].delivered_to
        if offset != self.checkpoint:
            self.checkpoint = offset
            self.dirty = True
            for dependent in self.dependents:
                dependent.dirty = True

    def preview(self, committing: Container[Span] = ()) -> int:
        """The checkpoint once ``committing`` (spans being committed) is stored."""
        offset = self.checkpoint
        for span in self.pending:
            if not (span.acked or span in committing):
                return max(offset, span.delivered_to)
            offset = span.end
        return offset

    def stored_offset(self, *, preview: bool = False, committing: Container[Span] = ()) -> int:
        """What may be written down: our checkpoint, held down by a floor still in flight."""
        offset = self.preview(committing) if preview else self.checkpoint
        floor = self.floor
        if floor is not None:
            floor_offset = floor.preview(committing) if preview else floor.checkpoint
            if floor_offset < self.start:
                offset = min(offset, floor_offset)
            elif not floor.pending:
                self.floor = None
                floor.dependents.remove(self)
        return offset

    def row(self, *, preview: bool = False, committing: Container[Span] = ()) -> Checkpoint:
        offset = self.stored_offset(preview=preview, committing=committing)
        return Checkpoint(self.flow, self.file_id, self.path, offset, self.size)


class TrackedFile:
    """An open file: identity, read position (via its framer), and its acknowledgement tracker."""

    __slots__ = (
        "acks",
        "fd",
        "framer",
        "gone",
        "last_growth",
        "metrics_key",
        "mtime",
        "path",
        "reported_cuts",
        "size",
        "stat_at",
        "truncations",
        "verified",
    )

    def __init__(
        self,
        path: str,
        fd: int,
        acks: FileAcks,
        framer: Framer,
        *,
        size: int,
        mtime: float,
        now: float,
    ) -> None:
        self.path = path
        self.fd = fd
        self.acks = acks
        self.framer = framer
        self.size = size
        self.mtime = mtime
        self.last_growth = now
        self.gone = (
            False  # no longer at a matching path (rotated away or deleted): drain, then close
        )
        self.truncations = 0
        self.reported_cuts = (0, 0)  # (records cut, bytes dropped) already counted in metrics
        self.stat_at = -1.0  # when read() last found the file idle by fstat (size, mtime fresh)
        self.verified = (-1, -1.0)  # (size, mtime) when its head was last checked by a rescan
        self.metrics_key = str(acks.file_id)  # its FileMetrics' key, formatted once, not per pass

    @property
    def file_id(self) -> FileId:
        return self.acks.file_id

    @property
    def offset(self) -> int:
        return self.framer.next_offset

    def read(self, max_bytes: int, now: float) -> tuple[Framed, int]:
        """Read up to ``max_bytes`` from the current position; returns the records and bytes read."""
        offset = self.framer.next_offset
        if offset >= self.size:
            # Nothing new as far as we know: an fstat tells, without a read that allocates
            # max_bytes (an idle pass over a thousand files would map and unmap a GiB).
            if self.stat_at != now:  # not already fstat'ed in this pass
                self.refresh_size()
                self.stat_at = now
            if self.size <= offset:
                return Framed(), 0
        known = self.size
        data = os.pread(self.fd, min(max_bytes, max(known - offset, MIN_READ)), offset)
        if not data:
            return Framed(), 0
        acks = self.acks
        fid = acks.file_id
        if offset == 0 and len(data) >= fid.fp_len:
            # read from the start: the bytes read hold the head themselves, no second pread
            # (each system call on the event loop gives up the GIL, and may wait to get it back)
            ours = digest(data[: fid.fp_len]) == fid.fp_hash
        else:
            ours = head_matches(self.fd, fid.fp_len, fid.fp_hash)
        if not ours:
            # Truncated and written again since we last looked (at offset 0 too: between the
            # open that fingerprinted the file and this first read): these bytes are not ours.
            # Checked after the read, so a rewrite during the read is caught as well.
            raise Truncated(self.path)
        self.last_growth = now
        end = offset + len(data)
        if end > self.size:
            self.size = end
        # The head still matched after the read, so the size known before it was this file's
        # (not a refill's after a truncation): how much it held, stored with the checkpoint so
        # that bytes a file took with it when it went unread are known, after a restart too.
        known = max(known, end)
        if acks.size is None or known > acks.size:
            acks.size = known
            acks.dirty = True
        return self.framer.feed(data, offset), len(data)

    def unread_bytes(self) -> int:
        return max(0, self.size - self.framer.next_offset)

    def refresh_size(self) -> int:
        st = os.fstat(self.fd)
        self.size = st.st_size
        self.mtime = st.st_mtime
        return self.size

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            finally:
                self.fd = -1
