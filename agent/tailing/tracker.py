"""All files of one flow: which to open, where to start, and what rotation, truncation and copies mean.

Decisions, in the order they are taken for a file seen at a matching path:
- same (dev, inode) as an open file: the same file, maybe renamed; a size below our position or
  a changed head means it was truncated (copytruncate): its copy, if one matches the pattern,
  continues from our position, and the file itself restarts at 0;
- a new inode with a checkpoint for its exact identity: resume there;
- a new inode whose head equals an open, untruncated file's: a copy in the making — not read
  while the original still holds the same bytes;
- a new inode whose head equals a file that ended (truncated, deleted, or from a checkpoint):
  the copy continues from where that file was read to;
- a new inode whose head equals a *truncated* file that was read further than the copy is long
  (lines written between logrotate's copy and its truncate were read from the live file): the
  copy is a prefix of what was read, so it starts at its end and nothing in it is sent again.
  The file's held tail (an unterminated last line) is flushed from the original then, since the
  copy does not hold all of it. Truncation is the evidence that it is a copy (seen while
  running, or after a restart as an inode whose head no longer matches its checkpoint): a file
  that merely starts like an old, longer one (a header line) is a new file, read from 0;
- otherwise a new file: from 0, or from the end on the flow's very first scan with END_OF_FILE.
New files of one scan are judged originals first (known inodes, then the longest), so that of
a file and its copy, the copy is the shadow.
A file no longer at a matching path (rotated away, deleted) is drained to EOF through its open
descriptor before it is closed, with no time limit while it holds unread bytes. What a file
truncated without a copy, replaced, or gone at start took with it unread is logged and counted
(:mod:`agent.tailing.losses`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import FlowConfig
from agent.metrics import FileMetrics, FlowMetrics
from agent.records import Checkpoint, FileId
from agent.tailing.discovery import Found, ScanProblems, scan, shipping_order
from agent.tailing.framing import Framed, Framer
from agent.tailing.identity import digest, fingerprint, head_matches
from agent.tailing.losses import judge_checkpoints, lost
from agent.tailing.tailer import FileAcks, TrackedFile

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Flushed:
    """Records a file gave up at once (its held tail, on rotation or truncation)."""

    acks: FileAcks
    records: list[Framed]


class FileSet:
    """The open files of one flow and the identity rules above."""

    def __init__(
        self,
        flow: FlowConfig,
        checkpoints: list[Checkpoint],
        metrics: FlowMetrics,
        *,
        max_record_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self.flow = flow
        self.flow_id = flow.flow_id
        self.metrics = metrics
        self.clock = clock
        self.max_record_bytes = max_record_bytes
        self.first_scan = not checkpoints
        self.files: dict[tuple[int, int], TrackedFile] = {}
        self.offsets: dict[FileId, int] = {}
        self.by_inode: dict[tuple[int, int], list[FileId]] = {}
        self.by_fp_len: dict[int, dict[bytes, list[FileId]]] = {}
        self.ended: dict[FileId, FileAcks] = {}  # ended files whose records are still in flight
        self.opened_in_scan: set[tuple[int, int]] = set()  # copies opened off the scan's list
        for c in checkpoints:
            self._remember(c.file, c.offset)
        # judged once, after the first scan: which of them went before they were read to the end
        self.checkpointed = checkpoints
        self.continued: dict[FileId, int] = {}  # identities a copy continued -> the copy's size
        self.reported: list[FileAcks] = []  # rows to store once a loss is reported (flow takes)
        self.shadows: set[tuple[int, int]] = set()
        self.waiting_since: dict[tuple[int, int], float] = {}
        # their paths, read by the watcher's thread (a set swapped whole, never mutated in place)
        self.waiting_paths: frozenset[str] = frozenset()
        self.restart_at_zero: set[tuple[int, int]] = set()
        # ``run --once`` ends with this pass: a file whose only line is unterminated cannot wait
        # for partialLineFlushMillis to be told apart; it is identified by the bytes it has.
        self.identify_partial_now = False
        # identities whose file was truncated or rewritten: a copy of one may be shorter than
        # what was read of it (the copytruncate window), and is then a prefix of what was read
        self.truncated: set[FileId] = set()
        self.problems = ScanProblems(set(), set())
        self._next_missed_warning = float("-inf")
        self._multiline = (
            re.compile(flow.multi_line_start_pattern.encode())
            if flow.multi_line_start_pattern
            else None
        )
        self._terminator = flow.truncated_record_terminator.encode()

    # --- scanning ---------------------------------------------------------------------------------

    def rescan(self) -> list[Flushed]:
        """Match the pattern again; open new files, notice renames, truncations and removals."""
        now = self.clock()
        flushed: list[Flushed] = []
        seen: set[tuple[int, int]] = set()
        problems = self.problems
        known = len(problems.not_regular) + len(problems.unreadable)
        found = scan(self.flow.file_pattern, problems)
        self.metrics.files_skipped += len(problems.not_regular) + len(problems.unreadable) - known
        for f in found:
            key = (f.dev, f.ino)
            seen.add(key)
            tracked = self.files.get(key)
            if tracked is None:
                continue
            if tracked.path != f.path:
                log.info("%s: %s was renamed to %s", self.flow_id, tracked.path, f.path)
                self.metrics.files_rotated += 1
                tracked.path = tracked.acks.path = f.path
                # saved with its new name: checkpointTimeToLiveDays keeps the row of a file
                # still at its path, and an idle file's row is not otherwise rewritten
                tracked.acks.dirty = True
                self._file_metrics(tracked).path = f.path
            tracked.gone = False
            flushed += self.check_truncation(tracked, verify_head=True)
        # The original before its copy, so that the copy is the one judged a shadow: files
        # known by inode first (a restart between logrotate's copy and its truncate), then the
        # longest (a copy holds at most what the original held).
        for f in sorted(found, key=lambda f: ((f.dev, f.ino) not in self.by_inode, -f.size)):
            key = (f.dev, f.ino)
            if key not in self.files:
                self._open(f, now)
        seen |= self.opened_in_scan
        self.opened_in_scan = set()
        for key, tracked in list(self.files.items()):
            if key not in seen and not tracked.gone:
                if _still_at(tracked.path, key):
                    # glob reads an unreadable directory (EMFILE, ENFILE, EACCES) as an empty
                    # one: a file still at the path it matched under has not left the pattern
                    self._missed_by_scan(tracked.path)
                    continue
                tracked.gone = True
                self.metrics.files_rotated += 1
                self._file_metrics(tracked).rotated = True
                log.info(
                    "%s: %s left the pattern (rotated or deleted); draining it",
                    self.flow_id,
                    tracked.path,
                )
        self.shadows &= seen
        if self.checkpointed:
            self.reported += judge_checkpoints(
                self.metrics,
                self.checkpointed,
                resumed={t.file_id for t in self.files.values()},
                present=seen,
                replaced=self.truncated,
                continued=self.continued,
                still_at=_still_at,
            )
            self.checkpointed = []
        for key in list(self.waiting_since):
            if key not in seen:
                del self.waiting_since[key]
        waiting = self.waiting_since
        self.waiting_paths = frozenset(f.path for f in found if (f.dev, f.ino) in waiting)
        self.first_scan = False
        return flushed

    def _missed_by_scan(self, path: str) -> None:
        self.metrics.read_errors += 1
        now = self.clock()
        if now >= self._next_missed_warning:
            self._next_missed_warning = now + 60.0  # the scan runs every few seconds
            log.error(
                "%s: the scan did not list %s though it is still there (out of file "
                "descriptors?); kept, not taken for rotated",
                self.flow_id,
                path,
            )

    def check_truncation(self, tracked: TrackedFile, *, verify_head: bool) -> list[Flushed]:
        """Restart a truncated file at 0 (its copy, if any, continues from our position)."""
        held = tracked.acks.size  # the most it was seen to hold (refill bytes not counted)
        try:
            size = tracked.refresh_size()
            rewritten = verify_head and not head_matches(
                tracked.fd, tracked.file_id.fp_len, tracked.file_id.fp_hash
            )
        except OSError:
            return []
        if size >= tracked.framer.next_offset and not rewritten:
            return []
        self.metrics.files_truncated += 1
        log.warning(
            "%s: %s was truncated (size %d < position %d); restarting it at 0",
            self.flow_id,
            tracked.path,
            size,
            tracked.framer.next_offset,
        )
        fp = (tracked.file_id.fp_len, tracked.file_id.fp_hash)
        copy = self._find_copy(fp, exclude=(tracked.file_id.dev, tracked.file_id.ino))
        out: list[Flushed] = []
        self.truncated.add(tracked.file_id)
        read_to = tracked.framer.next_offset
        if copy is None:
            lost(self.metrics, tracked.path, size=held, read_to=read_to, how="was truncated")
        else:
            how = "was truncated after logrotate's copy (written between the copy and the truncate)"
            lost(self.metrics, tracked.path, size=held, read_to=max(read_to, copy.size), how=how)
        if copy is not None and copy.size >= tracked.framer.next_offset:
            # the copy holds the held tail too: continue there from the last complete record
            self._retire(tracked, tracked.framer.consumed)
        else:
            records = tracked.framer.flush()
            if records:
                out.append(Flushed(tracked.acks, records))
            self._retire(tracked, tracked.framer.next_offset)
        key = (tracked.file_id.dev, tracked.file_id.ino)
        del self.files[key]
        tracked.close()
        self.restart_at_zero.add(key)
        if copy is not None:
            self.shadows.discard((copy.dev, copy.ino))
            self.opened_in_scan.add((copy.dev, copy.ino))
            self._open(copy, self.clock())
        return out

    def _find_copy(self, fp: tuple[int, bytes], exclude: tuple[int, int]) -> Found | None:
        for f in scan(self.flow.file_pattern):
            key = (f.dev, f.ino)
            if key == exclude or key in self.files:
                continue
            try:
                fd = os.open(f.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                if head_matches(fd, fp[0], fp[1]):
                    return f
            finally:
                os.close(fd)
        return None

    def _retire(self, tracked: TrackedFile, offset: int) -> None:
        self._remember(tracked.file_id, offset)
        if tracked.acks.pending:
            self.ended[tracked.file_id] = tracked.acks

    def _remember(self, fid: FileId, offset: int) -> None:
        if fid not in self.offsets:
            self.by_inode.setdefault(fid.inode, []).append(fid)
            self.by_fp_len.setdefault(fid.fp_len, {}).setdefault(fid.fp_hash, []).append(fid)
        self.offsets[fid] = offset

    def _open(self, f: Found, now: float) -> None:
        key = (f.dev, f.ino)
        try:
            # O_NONBLOCK: a path replaced by a FIFO after the scan must not block the flow
            fd = os.open(f.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            if f.path not in self.problems.unreadable:
                self.problems.unreadable.add(f.path)
                self.metrics.read_errors += 1
                log.error(
                    "%s: cannot open %s: %s (will retry every scan)",
                    self.flow_id,
                    f.path,
                    exc.strerror,
                )
            return
        self.problems.unreadable.discard(f.path)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != key or not stat.S_ISREG(st.st_mode):
                os.close(fd)  # replaced between scan and open (maybe by a FIFO): next scan
                return
            decided = self._identify(fd, st.st_size, key, now)
        except OSError:
            os.close(fd)
            return
        if decided is None:
            os.close(fd)  # too short to tell who it is yet, or a copy of a file being read
            return
        fid, start, floor = decided
        self.waiting_since.pop(key, None)
        self.shadows.discard(key)
        acks = FileAcks(self.flow_id, fid, f.path, start, floor=floor, size=st.st_size)
        acks.dirty = True  # record where we start, so a restart does not re-decide it
        framer = Framer(
            start=start,
            max_record_bytes=self.max_record_bytes,
            terminator=self._terminator,
            multiline=self._multiline,
            skip_header_lines=self.flow.skip_header_lines,
        )
        tracked = TrackedFile(f.path, fd, acks, framer, size=st.st_size, mtime=st.st_mtime, now=now)
        self.files[key] = tracked
        self.metrics.files[str(fid)] = FileMetrics(
            f.path, str(fid), size=st.st_size, read_offset=start, checkpoint_offset=start
        )
        log.info("%s: tailing %s from offset %d", self.flow_id, f.path, start)

    def _identify(
        self, fd: int, size: int, key: tuple[int, int], now: float
    ) -> tuple[FileId, int, FileAcks | None] | None:
        """Who the file is and where to start, or None (wait, or a copy of a live file)."""
        fresh = key in self.restart_at_zero
        if not fresh:
            for fid in self.by_inode.get(key, ()):
                if not head_matches(fd, fid.fp_len, fid.fp_hash):
                    self.truncated.add(fid)  # rewritten (copytruncate while we were away)
                    continue
                offset = self.offsets[fid]
                if offset <= size:
                    self._forget_ended()
                    return fid, offset, self.ended.get(fid)
                self.truncated.add(fid)
                self.metrics.files_truncated += 1
                log.warning(
                    "%s: %s is shorter than its checkpoint; reading it from 0",
                    self.flow_id,
                    fid,
                )
                fresh = True
        first_seen = self.waiting_since.setdefault(key, now)
        idle = self.identify_partial_now or (
            now - first_seen >= self.flow.partial_line_flush_millis / 1000
        )
        fp = fingerprint(fd, force=idle)
        if fp is None:
            return None
        fid = FileId(key[0], key[1], fp[0], fp[1])
        self.restart_at_zero.discard(key)
        if fresh:
            return fid, 0, None
        for other in self.files.values():
            ofid = other.file_id
            if ofid.inode != key and head_matches(fd, ofid.fp_len, ofid.fp_hash):
                self.shadows.add(key)
                return None  # a copy of a file still open: the original is read (or drained) first
        prior = [
            known
            for known in self._same_head(fd, size)
            if self.offsets[known] <= size or known in self.truncated
        ]
        if prior:
            best = max(prior, key=lambda known: self.offsets[known])
            start = self.offsets[best]
            if start > size:
                log.info(
                    "%s: %s is a copy of %s, which was read past the copy's end (%d > %d): "
                    "none of it is sent again",
                    self.flow_id,
                    fid,
                    best,
                    start,
                    size,
                )
                start = size
            self.continued[best] = size
            self._forget_ended()
            return fid, start, self.ended.get(best)
        if self.first_scan and self.flow.initial_position == "END_OF_FILE":
            return fid, _last_line_end(fd, size), None
        return fid, 0, None

    def _forget_ended(self) -> None:
        for fid in [f for f, acks in self.ended.items() if not acks.pending]:
            del self.ended[fid]

    def _same_head(self, fd: int, size: int) -> list[FileId]:
        """Known identities (checkpointed or ended) whose head this file starts with."""
        out: list[FileId] = []
        for length, table in self.by_fp_len.items():
            if length > size:
                continue
            ids = table.get(digest(os.pread(fd, length, 0)))
            if ids:
                out += ids
        return out

    # --- reading ----------------------------------------------------------------------------------

    def readable(self, *, refresh: bool = False) -> list[TrackedFile]:
        """Open files, oldest modification first (``refresh``: fstat them for current mtimes).

        A rotated file stops changing, so it sorts before the file that replaced it and is
        finished first; two busy files alternate as each write makes the other the older one.
        """
        if refresh:
            for tracked in self.files.values():
                with contextlib.suppress(OSError):
                    tracked.refresh_size()
        return sorted(self.files.values(), key=lambda t: shipping_order(t.mtime, t.path))

    def close_drained(self, tracked: TrackedFile) -> None:
        """A rotated-away file read to EOF and idle: close it and remember where it ended."""
        key = (tracked.file_id.dev, tracked.file_id.ino)
        self._retire(tracked, tracked.framer.next_offset)
        self.files.pop(key, None)
        tracked.close()
        log.info("%s: finished %s", self.flow_id, tracked.path)

    def _file_metrics(self, tracked: TrackedFile) -> FileMetrics:
        key = str(tracked.file_id)
        fm = self.metrics.files.get(key)
        if fm is None:
            fm = self.metrics.files[key] = FileMetrics(tracked.path, key)
        return fm

    def close(self) -> None:
        for tracked in self.files.values():
            tracked.close()
        self.files.clear()


def _still_at(path: str, key: tuple[int, int]) -> bool:
    """Is the file ``key`` (device, inode) still what ``path`` names? (stat needs no descriptor)"""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == key


def _last_line_end(fd: int, size: int) -> int:
    """Offset just after the last newline before ``size`` (END_OF_FILE skips only whole records)."""
    pos = size
    while pos > 0:
        step = min(pos, 64 * 1024)
        chunk = os.pread(fd, step, pos - step)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            return pos - step + nl + 1
        pos -= step
    return 0
