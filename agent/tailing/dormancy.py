"""Idle files closed to save descriptors (Filebeat's close_inactive), reopened by identity.

A file read to its end with its checkpoint written is closed, and remembered by (dev, inode) and
path: a scan that sees it changed, or an inotify write event at its path, reopens it, if the
path still names that inode. Files with unread bytes are never closed this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat

from agent.tailing.tables import Flushed, key_of, log
from agent.tailing.tailer import TrackedFile
from agent.tailing.truncation import Truncation, looks_truncated


class Dormancy(Truncation):
    """Closes idle files and reopens them when they change."""

    def make_dormant(self, tracked: TrackedFile, *, closing: list[int] | None = None) -> None:
        """Close an idle file read to its end; ``rescan`` reopens it by identity when it changes.
        With ``closing``, its descriptor is put there for the caller to close (in bulk)."""
        key = key_of(tracked)
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
        key = key_of(tracked)
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
        key = key_of(tracked)
        self.dormant.pop(key, None)
        self.open_heads.remove(tracked.file_id.fp_len, tracked.file_id.fp_hash, key)
        if self.dormant_paths.get(tracked.path) == key:
            del self.dormant_paths[tracked.path]

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
        fds = await asyncio.to_thread(reopen_all, todo)
        for (tracked, _path), fd in zip(todo, fds, strict=True):
            self._reawaken(tracked, fd)
            if self.files.get(key_of(tracked)) is tracked and looks_truncated(tracked):
                flushed += self.check_truncation(tracked, verify_head=True)
        return flushed


def reopen_all(todo: list[tuple[TrackedFile, str]]) -> list[int]:
    return [reopen(t, p) for t, p in todo]


def reopen(tracked: TrackedFile, path: str) -> int:
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
    if (st.st_dev, st.st_ino) != key_of(tracked) or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return -1
    return fd
