"""The blocking half of identifying files, run in a worker thread: open, stat, read the head, find the end.

The event loop then decides who each file is from these results alone, by dictionary look-ups
(adoption.py): no decision needs another read, so the loop's share stays O(1) per file.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from agent.records import FINGERPRINT_BYTES
from agent.tailing.discovery import Found
from agent.tailing.identity import digest

# Files probed per call to the worker thread: the loop applies one slice while the next is read.
SLICE = 512
_SEEK_DATA = getattr(os, "SEEK_DATA", None)
_SEEK_HOLE = getattr(os, "SEEK_HOLE", None)
_BACKWARDS_STEP = 64 * 1024


@dataclass(slots=True)
class Probe:
    """One matched path, opened: its descriptor (owned by whoever takes it), stat and head."""

    found: Found
    fd: int
    st: os.stat_result | None
    head: bytes
    digests: dict[int, bytes]  # the head's digest at every length a fingerprint can have
    end: int | None  # where END_OF_FILE would start (after the last newline), when asked
    error: OSError | None

    def digest_at(self, length: int) -> bytes | None:
        """The head's digest over its first ``length`` bytes (None: the file is shorter)."""
        known = self.digests.get(length)
        if known is not None:
            return known
        if length > len(self.head):
            return None
        value = self.digests[length] = digest(self.head[:length])
        return value


def probe(found: Found, *, want_end: bool) -> Probe:
    """Open ``found`` without blocking on a FIFO, and read what identification needs."""
    try:
        # O_NONBLOCK: a path replaced by a FIFO after the scan must not block anything
        fd = os.open(found.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        return Probe(found, -1, None, b"", {}, None, exc)
    p = probe_held(found, fd, want_end=want_end)
    if p.error is not None:
        os.close(fd)
        p.fd = -1
    return p


def probe_held(found: Found, fd: int, *, want_end: bool = False) -> Probe:
    """``probe`` through a descriptor already held (a file that left the pattern has no path).

    The descriptor stays the caller's on error too (it closes it once, wherever it ends).
    """
    try:
        st = os.fstat(fd)
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
        end = last_line_end(fd, st.st_size) if want_end else None
    except OSError as exc:
        return Probe(found, fd, None, b"", {}, None, exc)
    return Probe(found, fd, st, head, natural_digests(head), end, None)


def probe_many(found: list[Found], *, want_end: bool) -> list[Probe]:
    return [probe(f, want_end=want_end) for f in found]


def natural_digests(head: bytes) -> dict[int, bytes]:
    """Digests at the lengths a fingerprint of a file starting with ``head`` may have.

    A fingerprint covers the first KiB, or up to a line end (identity.fingerprint); a forced
    one (an idle unterminated line) covers everything there was: adoption.py asks ``digest_at``
    for the rarer lengths it knows of.
    """
    out: dict[int, bytes] = {}
    if len(head) >= FINGERPRINT_BYTES:
        out[FINGERPRINT_BYTES] = digest(head[:FINGERPRINT_BYTES])
    pos = head.find(b"\n")
    while pos >= 0:
        out[pos + 1] = digest(head[: pos + 1])
        pos = head.find(b"\n", pos + 1)
    if head:
        out.setdefault(len(head), digest(head))
    return out


def last_line_end(fd: int, size: int) -> int:
    """Offset just after the last newline before ``size`` (END_OF_FILE skips only whole records).

    Searches backwards through data only: holes of a sparse file (``truncate -s 30G``) read as
    zeros and hold no newline, so they are stepped over with SEEK_HOLE/SEEK_DATA where the
    filesystem has them, instead of read.
    """
    pos = size
    while pos > 0:
        data_start, data_end = _data_before(fd, pos)
        if data_end <= 0:
            return 0
        pos = data_end
        while pos > data_start:
            step = min(pos - data_start, _BACKWARDS_STEP)
            chunk = os.pread(fd, step, pos - step)
            if not chunk:
                return 0
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                return pos - step + nl + 1
            pos -= step
    return 0


def _data_before(fd: int, pos: int) -> tuple[int, int]:
    """The last data extent that starts before ``pos``, as (start, end ≤ pos); (0, pos) if unknown."""
    if _SEEK_DATA is None or _SEEK_HOLE is None:
        return 0, pos
    try:
        # Extents are found forwards (a log file is one or a few): keep the last before pos.
        start, end, at = -1, 0, 0
        while at < pos:
            try:
                data = os.lseek(fd, at, _SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data at or after ``at``
                    break
                raise
            if data >= pos:
                break
            at = os.lseek(fd, data, _SEEK_HOLE)
            start, end = data, min(at, pos)
        return (start, end) if start >= 0 else (0, 0)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            return 0, pos  # the filesystem cannot tell: read as before
        raise
