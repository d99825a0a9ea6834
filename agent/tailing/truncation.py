"""A file that shrank or was rewritten restarts at 0; its copy (copytruncate), if found, continues.

Truncation is also the evidence that a shorter file with the same head is a copy (adoption.py):
the identity is marked truncated here. What the truncated file took with it unread is counted
(losses.py): all of it past our position without a copy, only what the copy lacks with one.
"""

from __future__ import annotations

import os

from agent.tailing.discovery import Found
from agent.tailing.identity import head_matches
from agent.tailing.losses import AFTER_COPY, lost
from agent.tailing.probe import probe
from agent.tailing.tables import Flushed, key_of, log
from agent.tailing.tailer import TrackedFile
from agent.tailing.waiting import WaitingFiles


class Truncation(WaitingFiles):
    """Notices a truncated or rewritten open file and hands its position to its copy."""

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
            lost(
                self.metrics,
                tracked.path,
                size=held,
                read_to=max(read_to, copy.size),
                how=AFTER_COPY,
            )
        if copy is not None and copy.size >= tracked.framer.next_offset:
            # the copy holds the held tail too: continue there from the last complete record
            self._retire(tracked, tracked.framer.consumed)
        else:
            records = tracked.framer.flush()
            if records:
                out.append(Flushed(tracked.acks, records))
            self._retire(tracked, tracked.framer.next_offset)
        key = key_of(tracked)
        self._forget_open(tracked)
        tracked.close()
        self.restart_at_zero.add(key)
        if copy is not None:
            self.shadows.pop((copy.dev, copy.ino), None)
            self.opened_in_scan.add((copy.dev, copy.ino))
            self._adopt(probe(copy, want_end=False), self.clock(), copy_of_truncated=True)
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


def looks_truncated(tracked: TrackedFile) -> bool:
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


def which_look_truncated(files: list[TrackedFile]) -> list[TrackedFile]:
    return [t for t in files if looks_truncated(t)]
