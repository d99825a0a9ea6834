"""A new file that starts like an open one is only a *candidate* copy: what ends its candidacy.

logrotate's copytruncate copies the live file, then truncates it (a second or two later, longer for
a huge file). Between the two, the copy must not be read from 0: every line in it would be sent
twice. So a new inode whose head equals an open, untruncated file's is held unread (a shadow) —
but two different files may start alike (a startup banner longer than the fingerprint, a CSV
header, a genuine copy that is then written to), so the candidacy ends (adoption.py decides):

- the original is truncated: the copytruncate rules (truncation.py, adoption.py);
- the shadow is shown not to be a copy: its last bytes are not the original's at the same offsets
  (it is longer, or it was written to), while the original still holds what was read of it — the
  comparison here, in a worker thread;
- no truncation within ``SHADOW_WINDOW`` seconds after the shadow stopped growing;
- ``run --once`` ends (the agent will not be there to see a truncation).
The last three make it a file of its own, read from 0, logged with the reason (unless its head is
a truncated file's: then it is that file's copy after all, and continues it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from agent.tailing.identity import head_matches
from agent.tailing.probe import Probe

# How long a shadow that stopped growing may wait for its original's truncation. logrotate
# truncates right after its copy is complete: a second or two, tens of seconds for a copy of
# many GiB on a slow disk. A minute is well past that, and bounds how late a file that merely
# starts like another is shipped.
SHADOW_WINDOW = 60.0
# How many of a shadow's last bytes are compared with the original's at the same offsets: a
# page or so tells a different file from a copy (lines carry timestamps and counters), and
# stays a cheap pread per shadow per scan.
TAIL_BYTES = 4096

COPY = "copy"  # the original holds the shadow's last bytes: still a candidate copy
DIVERGED = "diverged"  # it does not, and it was not truncated: a file of its own
UNKNOWN = "unknown"  # the original cannot be read, or looks truncated: its own check decides


@dataclass(slots=True)
class Shadow:
    """A file held unread as a possible copy of an open file."""

    path: str
    original: str  # the open file it starts like (named in the log)
    size: int  # its size when last seen
    grew_at: float  # when it was first seen, or last seen to change size


@dataclass(slots=True)
class Original:
    """What the comparison needs of an open (or idle and closed) file a shadow starts like."""

    path: str
    key: tuple[int, int]
    fd: int  # -1: closed while idle, opened by path for the comparison
    fp_len: int
    fp_hash: bytes
    read_to: int  # our position in it: a file shorter than this was truncated


def compare(shadow: Probe, originals: list[Original]) -> str:
    """COPY if any original holds the shadow's last bytes at the same offsets; DIVERGED if none
    does and none looks truncated; else UNKNOWN. Blocking: run in a worker thread. A DIVERGED
    probe's stat is refreshed (it is adopted with it)."""
    try:
        st = os.fstat(shadow.fd)
        size = st.st_size
        n = min(TAIL_BYTES, size)
        mine = os.pread(shadow.fd, n, size - n)
    except OSError:
        return UNKNOWN
    verdict = DIVERGED
    for original in originals:
        one = _compare_one(mine, size - n, original)
        if one == COPY:
            return COPY
        if one == UNKNOWN:
            verdict = UNKNOWN
    if verdict == DIVERGED:
        shadow.st = st
    return verdict


def _compare_one(mine: bytes, at: int, original: Original) -> str:
    fd, opened = original.fd, False
    if fd < 0:
        try:
            fd = os.open(original.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return UNKNOWN
        opened = True
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != original.key:
            return UNKNOWN  # replaced at its path: its own scan sees to it
        theirs = os.pread(fd, len(mine), at) if st.st_size >= at + len(mine) else b""
        if theirs == mine:
            return COPY
        # Different bytes: a file of its own, unless the original was truncated (refilled, it
        # differs from any copy): its truncation check then hands the copy its position.
        if st.st_size < original.read_to or not head_matches(fd, original.fp_len, original.fp_hash):
            return UNKNOWN
        return DIVERGED
    except OSError:
        return UNKNOWN
    finally:
        if opened:
            os.close(fd)


def compare_all(judging: list[tuple[Probe, list[Original]]]) -> list[str]:
    """``compare`` each shadow; the descriptors of those still candidates are closed here."""
    out = []
    for p, originals in judging:
        verdict = compare(p, originals)
        if verdict != DIVERGED:
            os.close(p.fd)
        out.append(verdict)
    return out
