"""What one flow's FileSet knows: its open, idle and waiting files, and every identity read so far.

The tables every layer of the FileSet (tracker.py) reads and writes, and the few helpers that keep
them consistent: an identity is remembered with where it was read to (a copy continues from
there), a file retired while its records are in flight stays reachable (the copy's checkpoint is
held down to it), and the descriptor budget the tables start with.
"""

from __future__ import annotations

import logging
import os
import re
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent import gcpolicy
from agent.observability.metrics import FileMetrics, FlowMetrics
from agent.records import Checkpoint, FileId
from agent.tailing.discovery import Found, PathFilter, Scandir, ScanProblems
from agent.tailing.framing import Framed
from agent.tailing.identity import HeadIndex
from agent.tailing.probe import Probe
from agent.tailing.shadows import Original, Shadow
from agent.tailing.tailer import FileAcks, TrackedFile

if TYPE_CHECKING:  # typed config only: tailing needs no config code at run time
    from agent.config import FlowConfig

# One logger for every layer of the FileSet: its name is in each log line operators filter on.
log = logging.getLogger("agent.tailing.tracker")


@dataclass(slots=True)
class Flushed:
    """Records a file gave up at once (its held tail, on rotation or truncation)."""

    acks: FileAcks
    records: Framed


class FileTables:
    """The open files of one flow and what is known of every identity it has read."""

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
        # new files that start like an open one: possible copies (copytruncate), held unread
        # until the original is truncated or they are shown to be files of their own (shadows.py)
        self.shadows: dict[tuple[int, int], Shadow] = {}
        # shadows probed this scan, their descriptors open, to be compared with their originals
        # in a worker thread; those found different, and at the end of ``run --once`` all of
        # them, are adopted as files of their own
        self.judging: list[tuple[Probe, list[Original]]] = []
        self.own_files: set[tuple[int, int]] = set()
        self.release_shadows = False
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

    def _held(self, key: tuple[int, int]) -> bool:
        """Open, or closed while idle: either way ours, never to be identified again."""
        return key in self.files or key in self.dormant

    def _want_end(self) -> bool:
        return self.first_scan and self.flow.initial_position == "END_OF_FILE"

    def _retire(self, tracked: TrackedFile, offset: int) -> None:
        self._remember(tracked.file_id, offset)
        if tracked.acks.pending:
            self.ended[tracked.file_id] = tracked.acks

    def _remember(self, fid: FileId, offset: int) -> None:
        if fid not in self.offsets:
            self.by_inode.setdefault(fid.inode, []).append(fid)
            self.by_head.add(fid.fp_len, fid.fp_hash, fid)
        self.offsets[fid] = offset

    def _forget_ended(self) -> None:
        if len(self.ended) > 64 and self.scan_count == self._ended_swept:
            return  # swept once this scan already: keeps adopting many files linear
        self._ended_swept = self.scan_count
        for fid in [f for f, acks in self.ended.items() if not acks.pending]:
            del self.ended[fid]

    def _same_head(self, p: Probe) -> list[FileId]:
        """Known identities (checkpointed or ended) whose head this file starts with."""
        return self.by_head.lookup(p.head, p.digests, p.digest_at)

    def _forget_open(self, tracked: TrackedFile) -> None:
        key = key_of(tracked)
        if self.files.get(key) is tracked:
            del self.files[key]
        self.open_heads.remove(tracked.file_id.fp_len, tracked.file_id.fp_hash, key)

    def _start_draining(self, tracked: TrackedFile, how: str) -> None:
        """An open file no longer at a matching path: read to EOF through its descriptor, then
        closed, with no time limit while it holds unread bytes (counted as rotated)."""
        tracked.gone = True
        self.metrics.files_rotated += 1
        self._file_metrics(tracked).rotated = True
        log.info("%s: %s %s; draining it", self.flow_id, tracked.path, how)

    def _file_metrics(self, tracked: TrackedFile) -> FileMetrics:
        key = tracked.metrics_key
        fm = self.metrics.files.get(key)
        if fm is None:
            fm = self.metrics.files[key] = FileMetrics(tracked.path, key)
        return fm


def fd_budget() -> int:
    """Descriptors one flow may hold: half the soft RLIMIT_NOFILE, less a reserve for the rest."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - not on Linux
        return 512
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(64, (soft - 256) // 2)


def still_at(path: str, key: tuple[int, int]) -> bool:
    """Is the file ``key`` (device, inode) still what ``path`` names? (stat needs no descriptor)"""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == key


def key_of(tracked: TrackedFile) -> tuple[int, int]:
    return tracked.file_id.dev, tracked.file_id.ino
