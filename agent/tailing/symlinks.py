"""Which symbolic links discovery may follow, so a planted link cannot ship what its planter cannot read.

The agent reads with group ``adm``: anyone who can write a watched directory could plant
``evil.log -> /var/log/auth.log`` and have a root:adm 0640 file shipped to a stream they read.
The rule is the one behind the kernel's ``protected_symlinks``, applied to every link met while
resolving a path (links to links, and links to directories anywhere in the path): a link is
followed when its owner is root, or is the agent's own user, or could read the final target
itself (search on every directory of the target's real path, read on the file). Kubernetes'
``/var/log/containers/*.log`` (root's links, or the pod user's links to files it can read) keep
working. Otherwise the path is skipped, logged once and counted in ``files_skipped``.

Access is judged from mode bits, owner and groups (``/etc/group`` membership plus the primary
group); POSIX ACLs are not consulted. The filesystem and the user database are injected, so the
rule is tested without real users; ``refused`` is the one call discovery makes.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

MAX_LINKS = 40  # the kernel's own limit on links followed in one path resolution


class Problems(Protocol):
    """Where discovery keeps paths it skipped (``ScanProblems``): logged once, counted."""

    unreadable: set[str]


def user_groups(uid: int) -> frozenset[int]:
    """The groups a uid's processes get at login; none for a uid with no account."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return frozenset()
    return frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))


def may(st: os.stat_result, uid: int, gids: frozenset[int], bits: int) -> bool:
    """Whether ``uid`` (in ``gids``) has every permission in ``bits`` (a mask of r=4, w=2, x=1)."""
    if uid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == uid:
        have = (mode >> 6) & 7
    elif st.st_gid in gids:
        have = (mode >> 3) & 7
    else:
        have = mode & 7
    return have & bits == bits


class SymlinkPolicy:
    """Resolves a path link by link and says why it must not be followed (None: it may).

    Discovery makes one per scan: each directory is walked once and each user's groups looked
    up once for all the files of that scan (a scan of 100k files would otherwise lstat every
    component of every path, on the event loop). A link changed during the scan is still
    caught: the real path found is compared with what discovery's own ``stat`` saw.
    """

    def __init__(
        self,
        *,
        agent_uid: int | None = None,
        lstat: Callable[[str], os.stat_result] | None = None,
        stat_path: Callable[[str], os.stat_result] | None = None,
        readlink: Callable[[str], str] | None = None,
        groups: Callable[[int], frozenset[int]] = user_groups,
    ) -> None:
        self.agent_uid = os.geteuid() if agent_uid is None else agent_uid
        self._lstat = lstat or os.lstat
        self._stat = stat_path or os.stat
        self._readlink = readlink or os.readlink
        self._groups = groups
        self._dirs: dict[str, tuple[str, list[tuple[str, int]]] | None] = {}
        self._group_cache: dict[int, frozenset[int]] = {}

    def resolve(self, path: str) -> tuple[str, list[tuple[str, int]]] | None:
        """The real path and each link met on the way (path, owner uid); None if it won't resolve.

        Like the kernel: a relative target is taken from the link's directory and ``..`` from
        the real directory reached so far. Dangling links and loops give None: discovery's own
        ``stat`` fails on them and reports them as it always has (``why_not`` refuses a None
        for a path that ``stat`` did reach).
        """
        absolute = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
        head, name = os.path.split(absolute)
        if name in ("", ".", ".."):
            return self._walk(os.sep, [], absolute)
        if head not in self._dirs:
            self._dirs[head] = self._walk(os.sep, [], head)
        start = self._dirs[head]
        if start is None:
            return None
        return self._walk(start[0], list(start[1]), name)

    def _walk(
        self, real: str, links: list[tuple[str, int]], rest: str
    ) -> tuple[str, list[tuple[str, int]]] | None:
        pending = [p for p in rest.split(os.sep) if p]  # not abspath: it folds ``..`` early
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                real = os.path.dirname(real)
                continue
            candidate = os.path.join(real, name)
            try:
                st = self._lstat(candidate)
                if not stat.S_ISLNK(st.st_mode):
                    real = candidate
                    continue
                if len(links) >= MAX_LINKS:
                    return None
                target = self._readlink(candidate)
            except OSError:
                return None
            links.append((candidate, st.st_uid))
            if target.startswith(os.sep):
                real = os.sep
            pending[:0] = [p for p in target.split(os.sep) if p]
        return real, links

    def could_read(self, uid: int, real: str) -> bool:
        """Whether ``uid`` could open ``real`` (a path with no links in it) for reading itself."""
        gids = self._group_cache.get(uid)
        if gids is None:
            gids = self._group_cache[uid] = self._groups(uid)
        directory = os.path.dirname(real)
        try:
            while True:
                if not may(self._stat(directory), uid, gids, 1):
                    return False
                if directory == os.sep:
                    break
                directory = os.path.dirname(directory)
            return may(self._stat(real), uid, gids, 4)
        except OSError:
            return False

    def why_not(self, path: str, found: os.stat_result | None = None) -> str | None:
        """Why ``path`` must not be followed, or None when every link on it is trusted.

        ``found`` is discovery's ``stat`` of the path: the target judged here must be that very
        file, or a link swapped between the two looks is refused until the next scan.
        """
        resolved = self.resolve(path)
        if resolved is None:
            if found is None:
                return None  # dangling or looping: discovery's own stat reports it
            # Discovery's stat reached a file the walk cannot: a link changed between the two
            # looks, or a /proc magic link (fd/N, whose text may be "... (deleted)"). Passing it
            # would let the tracker open what discovery saw, unjudged.
            return (
                f"{path} cannot be followed link by link (a link changed while it was "
                "checked, or a /proc link whose target cannot be judged)"
            )
        real, links = resolved
        if not links:
            return None
        if found is not None:
            try:
                st = self._stat(real)
            except OSError:
                return f"{path} changed while it was checked"
            if (st.st_dev, st.st_ino) != (found.st_dev, found.st_ino):
                return f"{path} changed while it was checked"
        for link, owner in links:
            if owner in (0, self.agent_uid) or self.could_read(owner, real):
                continue
            return (
                f"the link {link} belongs to {_user(owner)}, who cannot read {real} itself; "
                "a link is followed only when its owner could read the target, or is root or "
                "the agent's user"
            )
        return None


def refused(
    path: str,
    found: os.stat_result,
    problems: Problems | None,
    policy: SymlinkPolicy | None = None,
) -> bool:
    """Discovery's hook: True when ``path`` must be skipped (logged once per path, and counted).

    Judged again at every scan, so a link put right is followed from the next one.
    """
    reason = (policy or SymlinkPolicy()).why_not(path, found)
    if reason is None:
        return False
    if problems is None or path not in problems.unreadable:
        log.warning("%s skipped: %s", path, reason)
        if problems is not None:
            problems.unreadable.add(path)  # the tracker counts these in files_skipped
    return True


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
