"""Which files a flow's ``filePattern`` matches now, and a watcher that says when to look again.

Unlike the AWS agent, directories may be globs and ``**`` recurses. Compressed files never match.
inotify (watchdog) wakes the flow at once; a periodic rescan catches what events miss.

The walk is our own, not ``glob``'s: a watched directory may hold symlink loops (``ln -s . l1``)
and hundreds of thousands of entries, and ``glob`` neither detects loops nor says which
directory it failed to read. Here every directory is entered at most once per pattern position
(by device and inode), ``**`` descends at most ``MAX_DEPTH`` levels, and a directory that cannot
be read for any reason but "it is gone" is reported, so the caller keeps what it knew was there.
It runs in a worker thread (the caller's ``asyncio.to_thread``): nothing here touches the loop.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.tailing import symlinks

log = logging.getLogger(__name__)

COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst", ".lz4", ".7z")
_MAGIC = set("*?[")
# How deep ``**`` descends below the directory it stands for (a deeper log tree is a mistake or
# an attack; loops are caught by inode before this bound is ever reached).
MAX_DEPTH = 40
# "Not there (any more)": the directory was removed or replaced while we walked. Any other
# error (EMFILE, ENFILE, EACCES, ENOMEM, EIO...) says nothing about the files below it.
_GONE = (errno.ENOENT, errno.ENOTDIR)

Scandir = Callable[[str], "os._ScandirIterator[str]"]
# Decides whether a matched path may be tailed; ``lst`` is its lstat (a symlink has S_ISLNK) and
# ``st`` the stat of what it points to. The one place a per-path policy (symlink ownership) plugs in.
PathFilter = Callable[[str, os.stat_result, os.stat_result], bool]


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
    refused: set[str] = field(default_factory=set)  # turned down by the path filter


@dataclass(slots=True)
class ScanResult:
    """What a walk found, and the directories it could not read (files below them: unknown)."""

    found: list[Found]
    failed: list[tuple[str, OSError]]
    too_deep: list[str]

    def covers(self, path: str) -> bool:
        """Is ``path`` below a directory this walk could not read (so its absence means nothing)?"""
        return any(path.startswith(d if d.endswith(os.sep) else d + os.sep) for d, _ in self.failed)


def scan(pattern: str, problems: ScanProblems | None = None) -> list[Found]:
    """Every regular, uncompressed file the pattern matches, oldest modification first."""
    return walk(pattern, problems).found


def walk(
    pattern: str,
    problems: ScanProblems | None = None,
    *,
    scandir: Scandir = os.scandir,
    admit: PathFilter | None = None,
    max_depth: int = MAX_DEPTH,
) -> ScanResult:
    """Match ``pattern`` by walking directories; never loops, never descends past ``max_depth``.

    ``glob``'s rules otherwise: ``*``, ``?`` and ``[...]`` match within one name, ``**`` any
    number of directories, and a wildcard does not match a name starting with a dot. Symlinked
    directories are followed, but a directory is entered once per position in the pattern.
    """
    root, parts = _split(pattern)
    result = ScanResult([], [], [])
    policy = symlinks.SymlinkPolicy()  # one per walk: directories walked once each
    found: dict[tuple[int, int], Found] = {}
    if not parts:  # a literal path
        _consider(root, pattern, found, problems, admit, policy)
        result.found = _oldest_first(found)
        return result
    matchers = [_matcher(p) for p in parts]
    last = len(parts) - 1
    visited: set[tuple[int, int, int]] = set()
    stack: list[tuple[str, int, int]] = [(root, 0, 0)]
    while stack:
        directory, index, depth = stack.pop()
        try:
            st = os.stat(directory or ".")
        except OSError as exc:
            if exc.errno not in _GONE and exc.errno != errno.ELOOP:
                result.failed.append((directory, exc))
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        # ``**`` also matches no directory at all: the positions after it apply here as well
        states = [index]
        while parts[states[-1]] == "**" and states[-1] < last:
            states.append(states[-1] + 1)
        entries: list[os.DirEntry[str]] | None = None
        below: list[tuple[str, int, int]] = []  # pushed reversed: popped in name order
        for state in states:
            key = (st.st_dev, st.st_ino, state)
            if key in visited:  # a loop, or a second way to the same directory
                continue
            visited.add(key)
            part, match = parts[state], matchers[state]
            if match is None:  # a literal name: no listing needed
                child = _join(directory, part)
                if state == last:
                    _consider(child, pattern, found, problems, admit, policy)
                else:
                    below.append((child, state + 1, depth))
                continue
            if entries is None:
                entries = _list(directory, scandir, result)
                if entries is None:
                    break
            hidden_ok = part.startswith(".")
            for entry in entries:
                name = entry.name
                if name.startswith(".") and not hidden_ok:
                    continue
                path = _join(directory, name)
                if part == "**":
                    if _is_dir(entry):
                        if depth + 1 > max_depth:
                            result.too_deep.append(path)
                        else:
                            below.append((path, state, depth + 1))
                elif match(name):
                    if state == last:
                        _consider(path, pattern, found, problems, admit, policy)
                    elif _is_dir(entry):
                        below.append((path, state + 1, depth))
        stack.extend(reversed(below))
    if result.too_deep and problems is not None:
        deep = result.too_deep[0]
        if deep not in problems.unreadable:
            problems.unreadable.add(deep)
            log.warning(
                "%s: %d director(ies) deeper than %d levels below a ** not searched (first: %s)",
                pattern,
                len(result.too_deep),
                max_depth,
                deep,
            )
    result.found = _oldest_first(found)
    return result


def _split(pattern: str) -> tuple[str, list[str]]:
    """The literal directory the walk starts from, and the pattern's parts below it."""
    names = pattern.split(os.sep)
    absolute = pattern.startswith(os.sep)
    names = [n for n in names if n]
    literal: list[str] = []
    while len(names) > 1 and not _MAGIC & set(names[0]) and names[0] != "**":
        literal.append(names.pop(0))
    root = (os.sep if absolute else "") + os.sep.join(literal)
    if len(names) == 1 and not _MAGIC & set(names[0]) and names[0] != "**":
        return _join(root, names[0]), []
    if names and names[-1] == "**":  # files at any depth, as ``**/*``
        names.append("*")
    return root, names


def _matcher(part: str) -> Callable[[str], object] | None:
    if part == "**":
        return bool
    if not _MAGIC & set(part):
        return None
    return re.compile(fnmatch.translate(part)).match


def _join(directory: str, name: str) -> str:
    if not directory:
        return name
    return directory + name if directory.endswith(os.sep) else directory + os.sep + name


def _list(directory: str, scandir: Scandir, result: ScanResult) -> list[os.DirEntry[str]] | None:
    try:
        it = scandir(directory or ".")
        try:
            entries = sorted(it, key=lambda e: e.name)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
    except OSError as exc:
        if exc.errno not in _GONE:
            result.failed.append((directory, exc))
        return None
    return entries


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows a symlink: loops are caught by the visited set
    except OSError:
        return False


def _consider(
    path: str,
    pattern: str,
    found: dict[tuple[int, int], Found],
    problems: ScanProblems | None,
    admit: PathFilter | None,
    policy: symlinks.SymlinkPolicy,
) -> None:
    if path.endswith(COMPRESSED):
        return
    try:
        st = os.stat(path)
    except OSError as exc:  # vanished, or a dangling/looping symlink
        if problems is not None and path not in problems.unreadable and os.path.lexists(path):
            problems.unreadable.add(path)
            log.warning("cannot stat %s: %s", path, exc.strerror)
        return
    if not stat.S_ISREG(st.st_mode):
        if problems is not None and path not in problems.not_regular:
            problems.not_regular.add(path)
            log.warning("%s matches %s but is not a regular file; skipped", path, pattern)
        return
    # the single place a per-path policy decides
    if symlinks.refused(path, st, problems, policy):  # a planted link must not ship auth.log
        return
    if admit is not None:
        try:
            lst = os.lstat(path)
        except OSError:
            return
        if not admit(path, lst, st):
            if problems is not None and path not in problems.refused:
                problems.refused.add(path)
            return
    key = (st.st_dev, st.st_ino)
    if key in found:  # hard links or symlinks to one file: tail it once, under its first name
        return
    found[key] = Found(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime)


def _oldest_first(found: dict[tuple[int, int], Found]) -> list[Found]:
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
