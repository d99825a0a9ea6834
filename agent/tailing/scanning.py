"""A walk's results applied to the FileSet: renames, changed idle files, new files, files gone.

The walk and every stat, open and read run in worker threads, in slices; the loop only applies
results. A file no longer at a matching path (rotated away, deleted) is drained to EOF through its
open descriptor before it is closed, with no time limit while it holds unread bytes. A directory
that cannot be listed is an error, never "the files below it are gone". Checkpointed files that
went while the agent was stopped are judged once the first scan's files are all open (losses.py).
"""

from __future__ import annotations

import asyncio

from agent.tailing.budget import DescriptorBudget, close_all
from agent.tailing.discovery import Found, ScanResult, walk
from agent.tailing.dormancy import reopen, reopen_all
from agent.tailing.losses import judge_checkpoints
from agent.tailing.probe import SLICE, probe_many
from agent.tailing.shadows import compare_all
from agent.tailing.tables import Flushed, key_of, log, still_at
from agent.tailing.tailer import TrackedFile
from agent.tailing.truncation import looks_truncated, which_look_truncated
from agent.tailing.waiting import probe_left


class Scanning(DescriptorBudget):
    """Matches the pattern again and brings the tables up to date with what it found."""

    def rescan(self) -> list[Flushed]:
        """Match the pattern again, every step in the caller's thread (tests, tools)."""
        now = self.clock()
        before = self._problems_count()
        result = walk(self.flow.file_pattern, self.problems, admit=self.admit, scandir=self.scandir)
        changed, seen, moved = self._sort_walk(result)
        grown = self._known(result, before, changed)
        flushed: list[Flushed] = []
        for tracked, path in grown:
            self._reawaken(tracked, reopen(tracked, path))
        for tracked in [*moved, *(t for t, _p in grown)]:
            if self.files.get(key_of(tracked)) is tracked and looks_truncated(tracked):
                flushed += self.check_truncation(tracked, verify_head=True)
        new = self._within_budget(self._new_files(result))
        for p in probe_many(new, want_end=self._want_end()):
            self._adopt(p, now)
        judging, self.judging = self.judging, []
        self._apply_verdicts(judging, compare_all(judging))
        self._finish(result, seen)
        left, self.left_waiting = self.left_waiting, []
        self._adopt_left(left, probe_left(left))
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
        grown = self._known(result, before, changed)
        flushed: list[Flushed] = []
        for i in range(0, len(grown), SLICE):
            part = grown[i : i + SLICE]
            fds = await asyncio.to_thread(reopen_all, part)
            for (tracked, _path), fd in zip(part, fds, strict=True):
                self._reawaken(tracked, fd)
        # only files whose size or mtime moved since we last looked can have been truncated
        tracked_now = [*moved, *(t for t, _p in grown)]
        for i in range(0, len(tracked_now), 4 * SLICE):
            part2 = tracked_now[i : i + 4 * SLICE]
            suspects = await asyncio.to_thread(which_look_truncated, part2)
            for tracked in suspects:
                if self.files.get(key_of(tracked)) is tracked:
                    flushed += self.check_truncation(tracked, verify_head=True)
        new = await asyncio.to_thread(self._new_files, result)
        closing: list[int] = []
        room = self._room_for(len(new), closing)
        if closing:  # idle files shed for room: closed before new ones are opened
            await asyncio.to_thread(close_all, closing)
        if len(new) > room:  # a hundred thousand files waiting for descriptors: listed off the loop
            self.backlog = await asyncio.to_thread(self._backlog_of, new[room:])
        else:
            self.backlog = []
        new = new[:room]
        want_end = self._want_end()
        for i in range(0, len(new), SLICE):
            probes = await asyncio.to_thread(probe_many, new[i : i + SLICE], want_end=want_end)
            self._adopt_all(probes)
        if self.judging:  # possible copies: compared with their originals off the loop
            judging, self.judging = self.judging, []
            self._apply_verdicts(judging, await asyncio.to_thread(compare_all, judging))
        self._finish(result, seen)
        if self.left_waiting:
            left, self.left_waiting = self.left_waiting, []
            self._adopt_left(left, await asyncio.to_thread(probe_left, left))
        return flushed

    async def release_shadows_async(self) -> list[Flushed]:
        """``run --once`` ends: the possible copies whose original was not truncated are files
        of their own, adopted from 0 by one more scan.

        Their original may yet be truncated after we exit (a copytruncate caught between its
        copy and its truncate): shipping the copy then sends what was read of the original
        twice. Not shipping it loses it for good if it is a file of its own (two logs that
        start with the same banner; a copy written to since): an agent that has exited sees no
        truncation, and the next run holds it back again for as long as the original stays. A
        duplicate is the lesser harm.
        """
        self.release_shadows = True
        try:
            return await self.rescan_async()
        finally:
            self.release_shadows = False

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

    def _known(
        self,
        result: ScanResult,
        problems_before: int,
        changed: list[tuple[Found, TrackedFile, bool]],
    ) -> list[tuple[TrackedFile, str]]:
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
        return grown

    def _finish(self, result: ScanResult, seen: set[tuple[int, int]]) -> None:
        """Files that left the pattern: drain the open ones, retire the dormant ones."""
        seen |= self.opened_in_scan
        self.opened_in_scan = set()
        for key, tracked in list(self.files.items()):
            if key not in seen and not tracked.gone and not result.covers(tracked.path):
                if still_at(tracked.path, key):
                    # a walk that missed a file still at the path it matched under (a listing
                    # failure it could not see): the file has not left the pattern
                    self._missed_by_scan(tracked.path)
                    continue
                self._start_draining(tracked, "left the pattern (rotated or deleted)")
        for key, tracked in list(self.dormant.items()):
            if (
                key not in seen
                and not result.covers(tracked.path)
                and not still_at(tracked.path, key)
            ):
                # read to its end before it went dormant: nothing is left to drain
                self.metrics.files_rotated += 1
                self._file_metrics(tracked).rotated = True
                self._drop_dormant(tracked)
                self._retire(tracked, tracked.framer.next_offset)
                log.info(
                    "%s: %s left the pattern; it was read to its end", self.flow_id, tracked.path
                )
        self._sweep_waiting(result, seen)
        for key in [k for k in self.shadows if k not in seen]:
            del self.shadows[key]
        self.own_files &= seen
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
                still_at=still_at,
            )
            self.checkpointed = []
            self._resumed = set()
        self.first_scan = False

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
