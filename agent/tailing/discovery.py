"""Which files a flow's ``filePattern`` matches now, and a watcher that says when to look again.

Unlike the AWS agent, directories may be globs and ``**`` recurses. Compressed files never match.
inotify (watchdog) wakes the flow at once; a periodic rescan catches what events miss.
"""

from __future__ import annotations

import glob
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.tailing import symlinks

log = logging.getLogger(__name__)

COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst", ".lz4", ".7z")
_MAGIC = set("*?[")


@dataclass(frozen=True, slots=True)
class Found:
    """A matching regular file and what stat said of it."""

    path: str
    dev: int
    ino: int
    size: int
    mtime: float


@dataclass(slots=True)
class ScanProblems:
    """Paths that match but cannot be tailed, reported once each."""

    not_regular: set[str]
    unreadable: set[str]


def scan(pattern: str, problems: ScanProblems | None = None) -> list[Found]:
    """Every regular, uncompressed file the pattern matches, oldest modification first."""
    found: dict[tuple[int, int], Found] = {}
    policy = symlinks.SymlinkPolicy()  # one per scan: directories walked once each
    for path in glob.iglob(pattern, recursive=True):
        if path.endswith(COMPRESSED):
            continue
        try:
            st = os.stat(path)
        except OSError as exc:  # vanished, or a dangling/looping symlink
            if problems is not None and path not in problems.unreadable and os.path.lexists(path):
                problems.unreadable.add(path)
                log.warning("cannot stat %s: %s", path, exc.strerror)
            continue
        if not stat.S_ISREG(st.st_mode):
            if problems is not None and path not in problems.not_regular:
                problems.not_regular.add(path)
                log.warning("%s matches %s but is not a regular file; skipped", path, pattern)
            continue
        if symlinks.refused(
            path, st, problems, policy
        ):  # a planted link must not ship /var/log/auth.log
            continue
        key = (st.st_dev, st.st_ino)
        if key in found:  # hard links or symlinks to one file: tail it once, under its first name
            continue
        found[key] = Found(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime)
    return sorted(found.values(), key=lambda f: (f.mtime, f.path))


def shipping_order(mtime: float, path: str) -> tuple[float, int, str]:
    """The order a flow ships its files in (``check`` lists them so): oldest modification first.

    Modification times are only as fine as the kernel's clock tick (~4 ms): on a tie the longer
    name goes first, since rotation appends to a name (app.log.1, app.log-20261122).
    """
    return (mtime, -len(path), path)


def watch_root(pattern: str) -> tuple[str, bool]:
    """The deepest literal directory of the pattern and whether below it must be watched recursively."""
    parts = pattern.split(os.sep)
    literal: list[str] = []
    for part in parts[:-1]:
        if _MAGIC & set(part):
            return (os.sep.join(literal) or os.sep), True
        literal.append(part)
    return (os.sep.join(literal) or os.sep), False


class Watcher:
    """inotify through watchdog; calls ``wake(rescan, path)`` from its thread, coalescing bursts."""

    def __init__(self, pattern: str, wake: Callable[[bool, str], None]) -> None:
        self.pattern = pattern
        self._wake = wake
        self._observer: object | None = None
        self._pending = threading.Event()
        self.active = False

    def start(self) -> bool:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            return False
        root, recursive = watch_root(self.pattern)
        while not os.path.isdir(root) and root != os.sep:
            root, recursive = os.path.dirname(root), True
        wake = self._wake

        class Handler(FileSystemEventHandler):  # type: ignore[misc]
            def on_any_event(self, event: FileSystemEvent) -> None:
                kind = event.event_type
                if kind in ("opened", "closed_no_write"):
                    return
                path = event.src_path
                wake(kind != "modified", path if isinstance(path, str) else os.fsdecode(path))

        try:
            observer = Observer()
            observer.schedule(Handler(), root, recursive=recursive)
            observer.daemon = True
            observer.start()
        except OSError as exc:  # inotify limits, or the directory vanished
            log.warning("cannot watch %s (%s); relying on polling", root, exc)
            return False
        self._observer = observer
        self.active = True
        return True

    def stop(self) -> None:
        observer = self._observer
        self._observer = None
        self.active = False
        if observer is not None:
            observer.stop()  # type: ignore[attr-defined]
            observer.join(timeout=5)  # type: ignore[attr-defined]
