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
descriptor before it is closed, with no time limit while it holds unread bytes. That includes a
file seen while too short to identify (empty, or no complete line yet): its descriptor is kept
while it waits, and if it leaves the pattern it is identified by whatever head it has then, and
drained — its writer may still write to it after a rename out of the pattern (logrotate olddir
with ``create``: the server writes to the old file until it reopens). What a file truncated
without a copy, replaced, or gone at start took with it unread is logged and counted
(:mod:`agent.tailing.losses`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import resource
import stat
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import FlowConfig
from agent.observability.metrics import FileMetrics, FlowMetrics
from agent.records import Checkpoint, FileId
from agent.service import gcpolicy
from agent.tailing.discovery import (
    Found,
    PathFilter,
    Scandir,
    ScanProblems,
    ScanResult,
    shipping_order,
    walk,
)
from agent.tailing.framing import Framed, Framer
from agent.tailing.identity import HeadIndex, fingerprint_of, head_matches
from agent.tailing.losses import judge_checkpoints, lost
from agent.tailing.probe import SLICE, Probe, probe, probe_held, probe_many
from agent.tailing.tailer import FileAcks, TrackedFile

log = logging.getLogger(__name__)

# Files adopted in one slice past which each is logged at debug level and the slice in one line.
QUIET_BURST = 64


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
        self.by_head: HeadIndex[FileId] = HeadIndex()  # checkpointed and ended identities
        self.open_heads: HeadIndex[tuple[int, int]] = HeadIndex()  # open and dormant files
        # idle files closed to save descriptors (Filebeat's close_inactive), by identity and path
        self.dormant: dict[tuple[int, int], TrackedFile] = {}
        # their paths; the watcher's thread only asks ``in`` of it (safe while the loop writes)
        self.dormant_paths: dict[str, tuple[int, int]] = {}
        self.admit: PathFilter | None = None  # a per-path policy (symlink ownership), if any
        self.scandir: Scandir = os.scandir  # injectable: tests make listing fail
        self.scan_count = 0
        self._ended_swept = -1
        self._last_found: list[Found] = []
        self._failing: set[tuple[str, int | None]] = set()
        self.max_open = fd_budget()  # descriptors this flow may hold open at once
        self.backlog: list[tuple[Found, bool]] = []  # (found, END_OF_FILE?) waiting for room
        self._emfile_scan = -1
        self._waiting_path: dict[tuple[int, int], str] = {}  # where each waiting file was seen
        self.ended: dict[FileId, FileAcks] = {}  # ended files whose records are still in flight
        self.opened_in_scan: set[tuple[int, int]] = set()  # copies opened off the scan's list
        for c in checkpoints:
            self._remember(c.file, c.offset)
        # judged once, when the files of the first scan are all opened (none waits for a
        # descriptor): which of them went before they were read to the end
        self.checkpointed = checkpoints
        self._resumed: set[FileId] = set()  # checkpointed identities opened again at their inode
        self.continued: dict[FileId, int] = {}  # identities a copy continued -> the copy's size
        self.reported: list[FileAcks] = []  # rows to store once a loss is reported (flow takes)
        self.shadows: set[tuple[int, int]] = set()
        self.waiting_since: dict[tuple[int, int], float] = {}
        # the descriptors of files waiting to be identified (within ``max_open``): one that leaves
        # the pattern is still drained through it; and those that left, since when (to give up
        # on one that stays empty)
        self.waiting_fds: dict[tuple[int, int], tuple[Found, int]] = {}
        self.left_waiting: list[tuple[Found, int, float]] = []
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
        self._freezer = gcpolicy.FreezeOnGrowth()  # thousands of files known: out of GC's sight
        self._adopt_level = logging.INFO  # DEBUG while a burst of files is adopted
        self._next_missed_warning = float("-inf")
        self._multiline = (
            re.compile(flow.multi_line_start_pattern.encode())
            if flow.multi_line_start_pattern
            else None
        )
        self._terminator = flow.truncated_record_terminator.encode()

    # --- scanning ---------------------------------------------------------------------------------

    def rescan(self) -> list[Flushed]:
        """Match the pattern again, every step in the caller's thread (tests, tools)."""
        now = self.clock()
        before = self._problems_count()
        result = walk(self.flow.file_pattern, self.problems, admit=self.admit, scandir=self.scandir)
        changed, seen, moved = self._sort_walk(result)
        flushed, grown = self._known(result, before, changed)
        for tracked, path in grown:
            self._reawaken(tracked, _reopen(tracked, path))
        for tracked in [*moved, *(t for t, _p in grown)]:
            if self.files.get(_key(tracked)) is tracked and _suspect(tracked):
                flushed += self.check_truncation(tracked, verify_head=True)
        new = self._within_budget(self._new_files(result))
        for p in probe_many(new, want_end=self._want_end()):
            self._adopt(p, now)
        flushed += self._finish(result, seen)
        left, self.left_waiting = self.left_waiting, []
        self._adopt_left(left, _probe_left(left))
        return flushed

    async def rescan_async(self) -> list[Flushed]:
        """``rescan`` with every walk, stat and read in a worker thread, in slices.

        The loop only applies results (dictionary look-ups), so a hundred thousand files or a
        directory full of symlink loops never hold it for more than a slice's bookkeeping.
        """
        before = self._problems_count()
        result = await asyncio.to_thread(
            walk, self.flow.file_pattern, self.problems, admit=self.admit, scandir=self.scandir
        )
        # which found files we hold and what changed, sorted out of 100k paths off the loop
        changed, seen, moved = await asyncio.to_thread(self._sort_walk, result)
        flushed, grown = self._known(result, before, changed)
        for i in range(0, len(grown), SLICE):
            part = grown[i : i + SLICE]
            fds = await asyncio.to_thread(_reopen_all, part)
            for (tracked, _path), fd in zip(part, fds, strict=True):
                self._reawaken(tracked, fd)
        # only files whose size or mtime moved since we last looked can have been truncated
        tracked_now = [*moved, *(t for t, _p in grown)]
        for i in range(0, len(tracked_now), 4 * SLICE):
            part2 = tracked_now[i : i + 4 * SLICE]
            suspects = await asyncio.to_thread(_suspects, part2)
            for tracked in suspects:
                if self.files.get(_key(tracked)) is tracked:
                    flushed += self.check_truncation(tracked, verify_head=True)
        new = await asyncio.to_thread(self._new_files, result)
        room = self._room_for(len(new))
        if len(new) > room:  # a hundred thousand files waiting for descriptors: listed off the loop
            self.backlog = await asyncio.to_thread(self._backlog_of, new[room:])
        else:
            self.backlog = []
        new = new[:room]
        want_end = self._want_end()
        for i in range(0, len(new), SLICE):
            probes = await asyncio.to_thread(probe_many, new[i : i + SLICE], want_end=want_end)
            self._adopt_all(probes)
        flushed += self._finish(result, seen)
        if self.left_waiting:
            left, self.left_waiting = self.left_waiting, []
            self._adopt_left(left, await asyncio.to_thread(_probe_left, left))
        return flushed

    def _sort_walk(
        self, result: ScanResult
    ) -> tuple[list[tuple[Found, TrackedFile, bool]], set[tuple[int, int]], list[TrackedFile]]:
        """The held files a walk found that need a look (renamed, back, or dormant and changed),
        and every identity it found. Only reads the tables: safe in a worker thread while the
        reader waits for it."""
        files, dormant = self.files, self.dormant
        changed: list[tuple[Found, TrackedFile, bool]] = []
        seen: set[tuple[int, int]] = set()
        moved: list[TrackedFile] = []  # open files whose size or mtime is not what we saw
        for f in result.found:
            key = (f.dev, f.ino)
            seen.add(key)
            tracked = files.get(key)
            if tracked is not None:
                if tracked.gone or tracked.path != f.path:
                    changed.append((f, tracked, False))
                if (f.size, f.mtime) != tracked.verified:
                    moved.append(tracked)
                continue
            tracked = dormant.get(key)
            if tracked is not None and (
                tracked.path != f.path or f.size != tracked.size or f.mtime != tracked.mtime
            ):
                changed.append((f, tracked, True))
        return changed, seen, moved

    def _new_files(self, result: ScanResult) -> list[Found]:
        """The files found that we do not hold, the original before its copy, so that the copy
        is the one judged a shadow: files known by inode first (a restart between logrotate's
        copy and its truncate), then the longest (a copy holds at most what the original held).
        Sorted before the descriptor budget cuts the list: the backlog's turns keep the order,
        and a copy opened while its original waits would continue from the same checkpoint.
        Only reads the tables: safe in a worker thread."""
        by_inode = self.by_inode
        new = [f for f in result.found if not self._held((f.dev, f.ino))]
        new.sort(key=lambda f: ((f.dev, f.ino) not in by_inode, -f.size))
        return new

    def _within_budget(self, new: list[Found]) -> list[Found]:
        """New files to open now; the rest wait in ``backlog`` until descriptors are free.

        Descriptors are bounded (``max_open``): idle files read to their end are closed first
        (dormant, reopened when they change); files with unread bytes are never closed, so
        past that the rest wait their turn, in the order ``_new_files`` gives.
        """
        room = self._room_for(len(new))
        self.backlog = self._backlog_of(new[room:])
        return new[:room]

    def _room_for(self, wanted: int) -> int:
        """How many new files may be opened now, closing idle ones for them: a slice at a time
        (each close is a system call on the loop; the backlog's turns open the rest)."""
        room = self.max_open - len(self.files)
        if wanted > room:
            room += self.shed(min(wanted - room, SLICE))
        return max(0, room)

    def _backlog_of(self, waiting: list[Found]) -> list[tuple[Found, bool]]:
        """The files left waiting, each with its start (O(n): a worker thread's job at scale).
        A file of the first scan keeps its END_OF_FILE start however long it waits."""
        want_end = self._want_end()
        before = {(f.dev, f.ino): end for f, end in self.backlog}
        return [(f, before.get((f.dev, f.ino), want_end)) for f in waiting]

    def shed(self, count: int) -> int:
        """Close up to ``count`` idle files read to their end (least recently grown first)."""
        idle = [
            t
            for t in self.files.values()
            if not t.gone
            and t.unread_bytes() == 0
            and not t.framer.has_pending()
            and not t.acks.dirty
        ]
        if len(idle) > count:
            idle.sort(key=lambda t: t.last_growth)
        fds: list[int] = []
        for tracked in idle[:count]:
            self.make_dormant(tracked, closing=fds)
        _close_soon(fds)
        return min(count, len(idle))

    async def adopt_backlog(self) -> None:
        """Open the next files that waited for descriptors, as many as there is room for."""
        room = min(SLICE, len(self.backlog), self.max_open - len(self.files))
        if room <= 0:
            room = self.shed(min(SLICE, len(self.backlog)))
        if room <= 0:
            return
        batch, self.backlog = self.backlog[:room], self.backlog[room:]
        fresh = [(f, end) for f, end in batch if not self._held((f.dev, f.ino))]
        probes = await asyncio.to_thread(lambda: [probe(f, want_end=end) for f, end in fresh])
        self._adopt_all(probes)

    def _adopt_all(self, probes: list[Probe]) -> None:
        """Adopt a slice of probed files. Past QUIET_BURST of them, each is logged at debug level
        and the slice in one line: a log line is a write(2), and the loop's system calls are
        where it waits for the GIL behind busy worker threads."""
        now = self.clock()
        quiet = len(probes) > QUIET_BURST
        self._adopt_level = logging.DEBUG if quiet else logging.INFO
        before = len(self.files)
        try:
            for p in probes:
                self._adopt(p, now)
        finally:
            self._adopt_level = logging.INFO
        if quiet:
            log.info(
                "%s: tailing %d more files (%d open, %d idle and closed; each at debug level)",
                self.flow_id,
                len(self.files) - before,
                len(self.files),
                len(self.dormant),
            )
        # past a thousand more files, what they hold leaves the collector's view
        self._freezer.observe(len(self.files) + len(self.dormant))

    def _known(
        self,
        result: ScanResult,
        problems_before: int,
        changed: list[tuple[Found, TrackedFile, bool]],
    ) -> tuple[list[Flushed], list[tuple[TrackedFile, str]]]:
        """Note renames of files we hold (open or dormant); list dormant ones that changed."""
        self.scan_count += 1
        self._report_failures(result)
        self.metrics.files_skipped += self._problems_count() - problems_before
        self._last_found = result.found
        grown: list[tuple[TrackedFile, str]] = []
        for f, tracked, dormant in changed:
            key = (f.dev, f.ino)
            if tracked.path != f.path:
                log.info("%s: %s was renamed to %s", self.flow_id, tracked.path, f.path)
                self.metrics.files_rotated += 1
                if dormant:
                    self.dormant_paths.pop(tracked.path, None)
                    self.dormant_paths[f.path] = key
                tracked.path = tracked.acks.path = f.path
                # saved with its new name: checkpointTimeToLiveDays keeps the row of a file
                # still at its path, and an idle file's row is not otherwise rewritten
                tracked.acks.dirty = True
                self._file_metrics(tracked).path = f.path
            tracked.gone = False
            # a dormant file that changed is reopened; so is one renamed, so that its row is
            # written under the new name (the flow writes checkpoints of open files)
            if dormant and (
                f.size != tracked.size or f.mtime != tracked.mtime or tracked.acks.dirty
            ):
                grown.append((tracked, f.path))
        return [], grown

    def _finish(self, result: ScanResult, seen: set[tuple[int, int]]) -> list[Flushed]:
        """Files that left the pattern: drain the open ones, retire the dormant ones."""
        seen |= self.opened_in_scan
        self.opened_in_scan = set()
        for key, tracked in list(self.files.items()):
            if key not in seen and not tracked.gone and not result.covers(tracked.path):
                if _still_at(tracked.path, key):
                    # a walk that missed a file still at the path it matched under (a listing
                    # failure it could not see): the file has not left the pattern
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
        for key, tracked in list(self.dormant.items()):
            if (
                key not in seen
                and not result.covers(tracked.path)
                and not _still_at(tracked.path, key)
            ):
                # read to its end before it went dormant: nothing is left to drain
                self.metrics.files_rotated += 1
                self._file_metrics(tracked).rotated = True
                self._drop_dormant(tracked)
                self._retire(tracked, tracked.framer.next_offset)
                log.info(
                    "%s: %s left the pattern; it was read to its end", self.flow_id, tracked.path
                )
        for key in [k for k in self.waiting_fds if k not in seen]:
            found, fd = self.waiting_fds[key]
            if result.covers(found.path) or _still_at(found.path, key):
                continue  # not listed, yet still there: it has not left the pattern
            del self.waiting_fds[key]
            self.left_waiting.append((found, fd, self.clock()))
        self.shadows &= seen
        if self.checkpointed and not self.backlog:
            # judged once every file found has been opened: one waiting for a descriptor may
            # be the checkpointed file itself, or the copy that continues a truncated one
            self.reported += judge_checkpoints(
                self.metrics,
                self.checkpointed,
                resumed=self._resumed,
                present=seen,
                replaced=self.truncated,
                continued=self.continued,
                still_at=_still_at,
            )
            self.checkpointed = []
            self._resumed = set()
        for key in list(self.waiting_since):
            if key not in seen:
                del self.waiting_since[key]
        waiting = self.waiting_since
        for key in [k for k in self._waiting_path if k not in waiting]:
            del self._waiting_path[key]
        self.waiting_paths = frozenset(self._waiting_path.values())
        self.first_scan = False
        return []

    def _report_failures(self, result: ScanResult) -> None:
        """A directory that cannot be listed is an error, never "the files below it are gone"."""
        failing = {(d, exc.errno) for d, exc in result.failed}
        self.metrics.scan_errors += len(result.failed)
        for directory, exc in result.failed:
            if (directory, exc.errno) not in self._failing:
                log.error(
                    "%s: cannot list %s: %s; keeping the files known below it, retrying every scan",
                    self.flow_id,
                    directory or ".",
                    exc.strerror or exc,
                )
        for directory, _errno in self._failing - failing:
            log.info("%s: %s can be listed again", self.flow_id, directory or ".")
        self._failing = failing

    def _problems_count(self) -> int:
        problems = self.problems
        return len(problems.not_regular) + len(problems.unreadable) + len(problems.refused)

    def _held(self, key: tuple[int, int]) -> bool:
        """Open, or closed while idle: either way ours, never to be identified again."""
        return key in self.files or key in self.dormant

    def _want_end(self) -> bool:
        return self.first_scan and self.flow.initial_position == "END_OF_FILE"

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
        key = _key(tracked)
        self._forget_open(tracked)
        tracked.close()
        self.restart_at_zero.add(key)
        if copy is not None:
            self.shadows.discard((copy.dev, copy.ino))
            self.opened_in_scan.add((copy.dev, copy.ino))
            self._adopt(probe(copy, want_end=False), self.clock())
        return out

    def _find_copy(self, fp: tuple[int, bytes], exclude: tuple[int, int]) -> Found | None:
        # the last walk's files: a copy made since is found by the next scan, by its head
        for f in self._last_found:
            key = (f.dev, f.ino)
            if key == exclude or key in self.files or key in self.dormant:
                continue
            try:
                fd = os.open(f.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                if os.fstat(fd).st_ino == f.ino and head_matches(fd, fp[0], fp[1]):
                    return f
            except OSError:
                continue
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
            self.by_head.add(fid.fp_len, fid.fp_hash, fid)
        self.offsets[fid] = offset

    def _adopt(self, p: Probe, now: float, *, force: bool = False) -> None:
        """Decide who a probed file is and where to start; keep its descriptor or close it.

        ``force``: identify it by whatever head it has (a waiting file that left the pattern).
        """
        f = p.found
        key = (f.dev, f.ino)
        if p.error is not None or p.st is None:
            exc = p.error
            if exc is not None and exc.errno in (errno.EMFILE, errno.ENFILE):
                self.metrics.read_errors += 1
                if self._emfile_scan != self.scan_count:  # once a scan, not once a file
                    self._emfile_scan = self.scan_count
                    log.error(
                        "%s: cannot open %s: %s (retrying; raise LimitNOFILE)",
                        self.flow_id,
                        f.path,
                        exc.strerror,
                    )
                return
            if f.path not in self.problems.unreadable:
                self.problems.unreadable.add(f.path)
                self.metrics.read_errors += 1
                log.error(
                    "%s: cannot open %s: %s (will retry every scan)",
                    self.flow_id,
                    f.path,
                    exc.strerror if exc is not None else "?",
                )
            return
        self.problems.unreadable.discard(f.path)
        st = p.st
        if (st.st_dev, st.st_ino) != key or not stat.S_ISREG(st.st_mode) or self._held(key):
            os.close(p.fd)  # replaced between scan and open (maybe by a FIFO): next scan
            return
        decided = self._identify(p, key, now, force=force)
        before = self.waiting_fds.pop(key, None)
        if before is not None:
            os.close(before[1])  # this probe's descriptor replaces it
        if decided is None:
            if (
                not force
                and key not in self.shadows
                and len(self.files) + len(self.waiting_fds) < self.max_open
            ):
                # too short to tell who it is yet: held, so that it is drained if it leaves
                # the pattern before it can be identified
                self.waiting_fds[key] = (f, p.fd)
            else:
                os.close(p.fd)  # a copy of a file being read (or no descriptor to spare)
            return
        fid, start, floor = decided
        self.waiting_since.pop(key, None)
        self._waiting_path.pop(key, None)
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
        tracked = TrackedFile(
            f.path, p.fd, acks, framer, size=st.st_size, mtime=st.st_mtime, now=now
        )
        self.files[key] = tracked
        self.open_heads.add(fid.fp_len, fid.fp_hash, key)
        self.metrics.files[str(fid)] = FileMetrics(
            f.path, str(fid), size=st.st_size, read_offset=start, checkpoint_offset=start
        )
        log.log(self._adopt_level, "%s: tailing %s from offset %d", self.flow_id, f.path, start)

    def _identify(
        self, p: Probe, key: tuple[int, int], now: float, *, force: bool = False
    ) -> tuple[FileId, int, FileAcks | None] | None:
        """Who the file is and where to start, or None (wait, or a copy of a live file)."""
        assert p.st is not None
        size = p.st.st_size
        fresh = key in self.restart_at_zero
        if not fresh:
            for fid in self.by_inode.get(key, ()):
                if p.digest_at(fid.fp_len) != fid.fp_hash:
                    self.truncated.add(fid)  # rewritten (copytruncate while we were away)
                    continue
                offset = self.offsets[fid]
                if offset <= size:
                    if self.checkpointed:
                        self._resumed.add(fid)  # may have ended by the time they are judged
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
        self._waiting_path[key] = p.found.path
        idle = (
            force
            or self.identify_partial_now
            or (now - first_seen >= self.flow.partial_line_flush_millis / 1000)
        )
        fp = fingerprint_of(p.head, force=idle)
        if fp is None:
            return None
        fid = FileId(key[0], key[1], fp[0], fp[1])
        self.restart_at_zero.discard(key)
        if fresh:
            return fid, 0, None
        for other in self.open_heads.lookup(p.head, p.digests, p.digest_at):
            if other != key:
                self.shadows.add(key)
                return None  # a copy of a file still open: the original is read (or drained) first
        prior = [
            known
            for known in self._same_head(p)
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
        if p.end is not None:  # probed for the flow's first scan with END_OF_FILE
            return fid, p.end, None
        return fid, 0, None

    def _adopt_left(self, left: list[tuple[Found, int, float]], probes: list[Probe]) -> None:
        """Waiting files that left the pattern: drain them like any rotated file, once they have
        a byte to be identified by. One deleted while empty, or still empty after the time a
        rotated file is given to go idle, had nothing to lose: closed."""
        now = self.clock()
        grace = max(self.flow.partial_line_flush_millis / 1000, 1.0)
        for (found, fd, left_at), p in zip(left, probes, strict=True):
            key = (found.dev, found.ino)
            st = p.st
            if st is None or self._held(key):
                os.close(fd)
                continue
            if not p.head:
                if st.st_nlink == 0 or now - left_at >= grace:
                    os.close(fd)
                    log.debug("%s: %s left the pattern empty", self.flow_id, found.path)
                else:
                    self.left_waiting.append((found, fd, left_at))  # its writer may still write
                continue
            self._adopt(p, now, force=True)
            tracked = self.files.get(key)
            if tracked is None:
                continue  # a copy of a file still read: the original holds its bytes
            tracked.gone = True
            self.metrics.files_rotated += 1
            self._file_metrics(tracked).rotated = True
            log.info(
                "%s: %s left the pattern before it could be identified; draining it",
                self.flow_id,
                found.path,
            )

    def _forget_ended(self) -> None:
        if len(self.ended) > 64 and self.scan_count == self._ended_swept:
            return  # swept once this scan already: keeps adopting many files linear
        self._ended_swept = self.scan_count
        for fid in [f for f, acks in self.ended.items() if not acks.pending]:
            del self.ended[fid]

    def _same_head(self, p: Probe) -> list[FileId]:
        """Known identities (checkpointed or ended) whose head this file starts with."""
        return self.by_head.lookup(p.head, p.digests, p.digest_at)

    # --- idle files -------------------------------------------------------------------------------

    def make_dormant(self, tracked: TrackedFile, *, closing: list[int] | None = None) -> None:
        """Close an idle file read to its end; ``rescan`` reopens it by identity when it changes.
        With ``closing``, its descriptor is put there for the caller to close (in bulk)."""
        key = _key(tracked)
        if self.files.get(key) is not tracked or tracked.acks.dirty:
            return  # a checkpoint not yet written: the flow writes it for open files only
        del self.files[key]
        if closing is not None:
            if tracked.fd >= 0:
                closing.append(tracked.fd)
            tracked.fd = -1
        else:
            tracked.close()
        self.dormant[key] = tracked
        self.dormant_paths[tracked.path] = key
        log.debug("%s: closed idle %s (reopened when it changes)", self.flow_id, tracked.path)

    def _reawaken(self, tracked: TrackedFile, fd: int) -> None:
        key = _key(tracked)
        if fd < 0 or self.dormant.get(key) is not tracked:
            if fd >= 0:
                os.close(fd)
            return
        self._drop_dormant(tracked)
        self.open_heads.add(tracked.file_id.fp_len, tracked.file_id.fp_hash, key)
        tracked.fd = fd
        self.files[key] = tracked
        with contextlib.suppress(OSError):
            tracked.refresh_size()

    def _drop_dormant(self, tracked: TrackedFile) -> None:
        key = _key(tracked)
        self.dormant.pop(key, None)
        self.open_heads.remove(tracked.file_id.fp_len, tracked.file_id.fp_hash, key)
        if self.dormant_paths.get(tracked.path) == key:
            del self.dormant_paths[tracked.path]

    def _forget_open(self, tracked: TrackedFile) -> None:
        key = _key(tracked)
        if self.files.get(key) is tracked:
            del self.files[key]
        self.open_heads.remove(tracked.file_id.fp_len, tracked.file_id.fp_hash, key)

    async def reopen_paths(self, paths: set[str]) -> list[Flushed]:
        """Dormant files written to (an inotify event): reopen them now, not at the next scan."""
        todo = [
            (t, t.path)
            for t in (self.dormant.get(self.dormant_paths.get(p, (-1, -1))) for p in paths)
            if t is not None
        ]
        flushed: list[Flushed] = []
        if not todo:
            return flushed
        fds = await asyncio.to_thread(_reopen_all, todo)
        for (tracked, _path), fd in zip(todo, fds, strict=True):
            self._reawaken(tracked, fd)
            if self.files.get(_key(tracked)) is tracked and _suspect(tracked):
                flushed += self.check_truncation(tracked, verify_head=True)
        return flushed

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

    def readable_touched(self, paths: set[str]) -> list[TrackedFile]:
        """Open files, oldest modification first, fstat'ing only those at ``paths``, those rotated
        away (no directory event covers a write to them) and those with bytes to read."""
        for tracked in self.files.values():
            if tracked.gone or tracked.path in paths or tracked.size != tracked.offset:
                with contextlib.suppress(OSError):
                    tracked.refresh_size()
        return sorted(self.files.values(), key=lambda t: shipping_order(t.mtime, t.path))

    async def readable_async(self) -> list[TrackedFile]:
        """``readable(refresh=True)``; with many files, the fstat and sort in a worker thread."""
        if len(self.files) <= SLICE:
            return self.readable(refresh=True)
        return await asyncio.to_thread(self.readable, refresh=True)

    def close_drained(self, tracked: TrackedFile) -> None:
        """A rotated-away file read to EOF and idle: close it and remember where it ended."""
        self._retire(tracked, tracked.framer.next_offset)
        self._forget_open(tracked)
        tracked.close()
        log.info("%s: finished %s", self.flow_id, tracked.path)

    def _file_metrics(self, tracked: TrackedFile) -> FileMetrics:
        key = tracked.metrics_key
        fm = self.metrics.files.get(key)
        if fm is None:
            fm = self.metrics.files[key] = FileMetrics(tracked.path, key)
        return fm

    def close(self) -> None:
        for tracked in self.files.values():
            tracked.close()
        self.files.clear()
        self.dormant.clear()
        for _found, fd in self.waiting_fds.values():
            os.close(fd)
        for _found, fd, _left_at in self.left_waiting:
            os.close(fd)
        self.waiting_fds.clear()
        self.left_waiting.clear()


def fd_budget() -> int:
    """Descriptors one flow may hold: half the soft RLIMIT_NOFILE, less a reserve for the rest."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - not on Linux
        return 512
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(64, (soft - 256) // 2)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _close_soon(fds: list[int]) -> None:
    """Close descriptors in a worker thread when a loop runs (hundreds of close(2) calls would
    each give up the loop's GIL), else now. Nothing refers to them any more: their numbers are
    not reused before they are closed."""
    if not fds:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _close_all(fds)
        return
    loop.run_in_executor(None, _close_all, fds)


def _still_at(path: str, key: tuple[int, int]) -> bool:
    """Is the file ``key`` (device, inode) still what ``path`` names? (stat needs no descriptor)"""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == key


def _key(tracked: TrackedFile) -> tuple[int, int]:
    return tracked.file_id.dev, tracked.file_id.ino


def _suspect(tracked: TrackedFile) -> bool:
    """Might the file have been truncated or rewritten? (Blocking: run in a worker thread.)"""
    try:
        size = tracked.refresh_size()
        fid = tracked.file_id
        suspect = size < tracked.framer.next_offset or not head_matches(
            tracked.fd, fid.fp_len, fid.fp_hash
        )
    except OSError:
        return False
    tracked.verified = (size, tracked.mtime)  # a later scan that stats the same skips the check
    return suspect


def _probe_left(left: list[tuple[Found, int, float]]) -> list[Probe]:
    return [probe_held(found, fd) for found, fd, _left_at in left]


def _suspects(files: list[TrackedFile]) -> list[TrackedFile]:
    return [t for t in files if _suspect(t)]


def _reopen_all(todo: list[tuple[TrackedFile, str]]) -> list[int]:
    return [_reopen(t, p) for t, p in todo]


def _reopen(tracked: TrackedFile, path: str) -> int:
    """A descriptor on ``path`` if it still is the dormant file's inode, else -1. (Blocking.)"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return -1
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return -1
    if (st.st_dev, st.st_ino) != _key(tracked) or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return -1
    return fd
