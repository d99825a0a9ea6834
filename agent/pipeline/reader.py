"""Finds a flow's files, reads them and frames records: the first part of the flow, on its own task.

The reader discovers (a rescan every maxTimeBetweenFileTrackerRefreshMillis, and at once when
inotify names a new file), reads each readable file one chunk per pass (oldest first, so a busy
file holds the others back by one read at most), frames records and hands them to processing. It
stops reading while the in-flight budget is full, discovering on so that a file rotated out of
the pattern during a long outage is still held open and drained.

What it reads is its ``policy``: ``Follow`` tails for ever; ``Once`` (``run --once``) ships every
matched file up to its size when first seen, then flushes held partial lines and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from agent.config import FlowConfig
from agent.observability.metrics import FileMetrics, FlowMetrics
from agent.pipeline.budget import Budget
from agent.pipeline.events import wait_any
from agent.pipeline.processing import Processing
from agent.pipeline.sender import Sender
from agent.records import Checkpoint
from agent.tailing.discovery import Watcher
from agent.tailing.framing import Framed
from agent.tailing.tailer import FileAcks, TrackedFile, Truncated
from agent.tailing.tracker import FileSet, Flushed

log = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024
# A read pass over many files gives the event loop a turn at least this often (seconds).
PASS_SLICE = 0.02
IDLE_POLL_WITH_INOTIFY = 1.0
# With inotify, every file is fstat'ed this often (a safety net for missed events); between, only
# the files events name. Keeps a thousand idle files from costing a thousand fstats a second.
STAT_ALL_WITH_INOTIFY = 10.0
# ``run --once`` with nothing to read but not finished (files wait for descriptors): the longest
# it waits before looking again. Short: --once ends as soon as the last file is shipped.
ONCE_IDLE_WAIT = 0.01


class Follow:
    """Tail for ever: a file is read when it grew, holds a partial line, or is due to close."""

    watch = True  # inotify (or polling) wakes the reader when files change
    identify_partial = False  # a file too short to fingerprint waits until it is long enough
    wait_when_idle = True

    def __init__(self, close_after: float) -> None:
        self.close_after = close_after

    def opened(self, files: FileSet) -> None:
        pass

    def wants(self, tracked: TrackedFile, now: float) -> bool:
        # read to its end, nothing held, not due to close: nothing to do
        return not (
            tracked.size == tracked.offset
            and not tracked.gone
            and not tracked.framer.has_pending()
            and now - tracked.last_growth < self.close_after
        )

    def exhausted(self, tracked: TrackedFile) -> None:
        pass

    def finished(self, files: FileSet) -> bool:
        return False


class Once:
    """Ship every matched file up to its size when first seen, then stop (``run --once``)."""

    watch = False
    identify_partial = True  # every matched file is shipped to its end
    wait_when_idle = False

    def __init__(self) -> None:
        self.targets: dict[TrackedFile, int] = {}

    def opened(self, files: FileSet) -> None:
        for t in files.files.values():
            self.targets.setdefault(t, t.size)

    def wants(self, tracked: TrackedFile, now: float) -> bool:
        return tracked.offset < self.targets.get(tracked, 0)

    def exhausted(self, tracked: TrackedFile) -> None:
        """Read failed, or the file is shorter than when we started: done with it."""
        self.targets[tracked] = tracked.offset

    def finished(self, files: FileSet) -> bool:
        targets = self.targets
        return not files.backlog and all(
            t.offset >= targets.get(t, 0) for t in files.files.values()
        )


class Reader:
    """Discovery, reading and framing of one flow's files, by its ``policy``."""

    def __init__(
        self,
        config: FlowConfig,
        metrics: FlowMetrics,
        budget: Budget,
        processing: Processing,
        sender: Sender,
        seen: set[FileAcks],
        *,
        once: bool,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.budget = budget
        self.processing = processing
        self.sender = sender
        self.seen = seen  # the checkpointer's: every file records were emitted of
        self.clock = clock
        # idle files are closed after this long (0: never), so descriptors stay bounded
        self.close_inactive = config.close_inactive_millis / 1000
        self.policy: Follow | Once = Once() if once else Follow(self.close_inactive or float("inf"))
        self.files: FileSet | None = None
        self.watcher: Watcher | None = None
        self._wake = asyncio.Event()
        self._rescan_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_pending = threading.Event()
        self._reopen: set[str] = set()  # paths of dormant files written to (watcher's thread)
        self._touched: set[str] = set()  # paths of files written to (watcher's thread)

    async def start(self, checkpoints: list[Checkpoint], max_record_bytes: int) -> None:
        """Open the flow's files from their checkpoints and start watching their directories."""
        self._loop = asyncio.get_running_loop()
        self.files = FileSet(
            self.config,
            checkpoints,
            self.metrics,
            max_record_bytes=max_record_bytes,
            clock=self.clock,
        )
        self.files.identify_partial_now = self.policy.identify_partial
        if self.policy.watch:
            self.watcher = Watcher(self.config.file_pattern, self._wake_from_thread)
            # inotify on a ``**`` pattern adds a watch per directory: a walk, never on the loop
            await asyncio.to_thread(self.watcher.start)

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def _wake_from_thread(self, rescan: bool, path: str = "") -> None:
        # A file that was too short to identify (empty, say) and is now written through a
        # descriptor its writer keeps open only sends "modified": look again now, not at the
        # next periodic rescan. Writes to files already tailed never cost a rescan.
        files = self.files
        if rescan or (files is not None and path in files.waiting_paths):
            self._rescan_requested = True
        elif files is not None and path in files.dormant_paths:
            self._reopen.add(path)  # an idle file we closed was written to: reopen it now
        else:
            self._touched.add(path)  # written to: the next pass fstats it
        if self._wake_pending.is_set() or self._loop is None:
            return
        self._wake_pending.set()
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        files = self.files
        assert files is not None
        cfg = self.config
        policy = self.policy
        budget = self.budget
        processing = self.processing
        inotify = self.watcher is not None and self.watcher.active
        refresh = cfg.max_time_between_file_tracker_refresh_millis / 1000
        poll = cfg.min_time_between_file_polls_millis / 1000
        if inotify:
            poll = max(poll, IDLE_POLL_WITH_INOTIFY)
        flush_after = cfg.partial_line_flush_millis / 1000
        next_stat_all = 0.0
        next_scan = 0.0
        while not stop.is_set():
            now = self.clock()
            if now >= next_scan or self._rescan_requested:
                next_scan = await self._rescan(files, policy, refresh)
            if self._reopen:
                paths, self._reopen = self._reopen, set()
                self._emit_flushed(await files.reopen_paths(paths))
            if files.backlog:  # files that waited for descriptors: open the next ones
                await files.adopt_backlog()
                policy.opened(files)
            progressed = False
            now = self.clock()
            if inotify and now < next_stat_all:
                # inotify names the files written to: fstat those (and files rotated away,
                # which no directory event covers), not every file every second
                touched, self._touched = self._touched, set()
                ordered = files.readable_touched(touched)
            else:
                ordered = await files.readable_async()
                now = self.clock()
                next_stat_all = now + STAT_ALL_WITH_INOTIFY
                for tracked in ordered:
                    tracked.stat_at = now  # sizes are fresh: no second fstat in this pass
            yielded = time.monotonic()
            for tracked in ordered:
                # checked at every file: a read gives up the GIL twice (pread, head check), and
                # taking it back behind a busy worker thread costs up to the switch interval
                if time.monotonic() - yielded >= PASS_SLICE:
                    await asyncio.sleep(0)  # a pass over many files leaves the loop its turns
                    yielded = time.monotonic()
                    if files.files.get((tracked.file_id.dev, tracked.file_id.ino)) is not tracked:
                        continue
                if not policy.wants(tracked, now):
                    continue
                rescanned = False
                while budget.full() and not stop.is_set():
                    budget.room.clear()
                    self.sender.wake.set()
                    self._wake_pending.clear()
                    await wait_any(budget.room, self._wake, 1.0)
                    self._wake.clear()
                    # Keep discovering while blocked: a file created and rotated out of the
                    # pattern during a long outage is then held open and drained afterwards.
                    if self.clock() >= next_scan or self._rescan_requested:
                        next_scan = await self._rescan(files, policy, refresh)
                        rescanned = True
                if stop.is_set():
                    break
                if rescanned:  # the rescan may have closed files of this list: list them again
                    progressed = True
                    break
                if processing.busy():
                    await processing.wait_for_room(stop)
                if stop.is_set():
                    break
                try:
                    framed, n = tracked.read(READ_CHUNK, now)
                except Truncated:
                    self._emit_flushed(files.check_truncation(tracked, verify_head=True))
                    self._reread_now()
                    continue
                except OSError as exc:
                    self.metrics.read_errors += 1
                    log.error("%s: reading %s failed: %s", cfg.flow_id, tracked.path, exc)
                    policy.exhausted(tracked)
                    continue
                if n:
                    progressed = True
                    fm = self.metrics.files.get(tracked.metrics_key)
                    self._emit(tracked.acks, framed, n, fm)
                    self._count_cuts(tracked)
                    if fm is not None:
                        fm.read_offset = tracked.offset
                        fm.observe_size(max(fm.size, tracked.size))
                    # One read per file per pass, oldest first: a busy or huge file (30 GiB of
                    # a sparse file's zeros) holds the others back for one read at most.
                    continue
                policy.exhausted(tracked)  # nothing more to read for now
                self._idle_file(tracked, now, flush_after)
            if policy.finished(files):
                if files.shadows:  # possible copies whose original was not truncated: shipped
                    self._emit_flushed(await files.release_shadows_async())
                    policy.opened(files)
                    if not policy.finished(files):
                        continue
                for tracked in files.readable():
                    self._emit(tracked.acks, tracked.framer.flush(), 0)
                return
            if not progressed:
                # Nothing to read now. Following, wait for a wake-up or the next poll. Once, the
                # pass is only waiting for others (files in the descriptor backlog open when
                # shipped files close, after their records are acknowledged): give the sender
                # and the checkpointer the loop for a moment rather than spin (a pass with no
                # wait held the loop for 10 s with 300 files past the descriptor budget).
                timeout = max(0.0, min(poll, next_scan - self.clock()))
                if not policy.wait_when_idle:
                    timeout = min(timeout, ONCE_IDLE_WAIT)
                self._wake_pending.clear()
                await wait_any(self._wake, stop, timeout)
                self._wake.clear()
            else:
                await asyncio.sleep(0)

    def _count_cuts(self, tracked: TrackedFile) -> None:
        framer = tracked.framer
        cuts = (framer.truncated, framer.bytes_discarded)
        if cuts != tracked.reported_cuts:
            before = tracked.reported_cuts
            self.metrics.records_truncated += cuts[0] - before[0]
            self.metrics.bytes_discarded += cuts[1] - before[1]
            if cuts[0] > before[0]:
                log.warning(
                    "%s: %s: %d record(s) over the size limit were cut (ending with the truncation terminator)",
                    self.config.flow_id,
                    tracked.path,
                    cuts[0] - before[0],
                )
            tracked.reported_cuts = cuts

    def _idle_file(self, tracked: TrackedFile, now: float, flush_after: float) -> None:
        assert self.files is not None
        if not tracked.gone:
            try:
                size = tracked.size if tracked.stat_at == now else tracked.refresh_size()
            except OSError:
                return
            if size < tracked.offset:
                self._emit_flushed(self.files.check_truncation(tracked, verify_head=False))
                self._reread_now()
                return
            fm = self.metrics.files.get(tracked.metrics_key)
            if fm is not None:
                fm.observe_size(size)
        idle = now - tracked.last_growth >= flush_after
        if idle and tracked.framer.has_pending():
            self._emit(tracked.acks, tracked.framer.flush(), 0)
        if tracked.gone and idle and tracked.unread_bytes() == 0:
            self.files.close_drained(tracked)
        elif (
            not tracked.gone
            and tracked.unread_bytes() == 0
            and not tracked.framer.has_pending()
            and (
                (self.close_inactive and now - tracked.last_growth >= self.close_inactive)
                or self.files.backlog  # files wait for descriptors: free this one now
            )
        ):
            self.files.make_dormant(tracked)  # reopened by identity when it changes

    async def _rescan(self, files: FileSet, policy: Follow | Once, refresh: float) -> float:
        """Match the pattern again and give new files their ``once`` targets (wherever the scan
        runs: a file found while reading waits for the budget is shipped too); the time the
        next periodic scan is due."""
        started = self.clock()
        self._rescan_requested = False
        self._emit_flushed(await files.rescan_async())
        policy.opened(files)
        return started + refresh

    def _reread_now(self) -> None:
        """After a truncation: its copy (opened by it) and the refilled file are read at once,
        not at the next wake-up or the next periodic rescan."""
        self._rescan_requested = True
        self._wake.set()

    def _emit_flushed(self, flushed: list[Flushed]) -> None:
        for f in flushed:
            self._emit(f.acks, f.records, 0)

    def _emit(
        self,
        acks: FileAcks,
        framed: Framed,
        nbytes: int,
        fm: FileMetrics | None = None,
    ) -> None:
        """Hand framed records on, counted; ``fm``: the file's metrics when the caller has them
        (the read loop does, by its preformatted key), else looked up here (flushes: rare)."""
        m = self.metrics
        m.bytes_parsed += nbytes
        if fm is None and (framed or nbytes):
            fm = m.files.get(str(acks.file_id))
        if fm is not None:
            fm.bytes_parsed += nbytes
            fm.records_parsed += len(framed)
        if not framed:
            return
        m.records_parsed += len(framed)
        self.seen.add(acks)
        self.processing.submit(acks, framed)
