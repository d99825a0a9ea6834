"""One agent per state: two agents on one checkpoint file or store would ship every line twice.

Each piece of state a configuration uses (the checkpoint database of the AWS flows, the embedded
store of the local ones) gets an exclusive ``flock`` on a lock file beside it, held for the life
of the process. The kernel drops the lock when the process dies, SIGKILL included, so a crash
never leaves a stale lock behind; the pid written into the file only names the holder in the
error message.

The lock file sits in a directory the agent's user can write, and root may run the agent: so it
is opened with ``O_NOFOLLOW`` (a planted ``cp.db.lock -> /etc/shadow`` is refused, not followed),
must be a regular file with one link, and is only ever rewritten when it was created as a lock
(empty, or holding a pid). Anything else is refused with an error that names it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

from agent.config import AgentConfig
from agent.errors import AgentError


class AlreadyRunning(AgentError):
    """Another agent holds the state this configuration would use."""


def state_locks(config: AgentConfig) -> list[Path]:
    """The lock files of the state ``config`` uses."""
    paths: list[Path] = []
    if any(f.local_stream is not None for f in config.flows):
        paths.append(Path(config.local_store_directory) / "agent.lock")
    if any(f.local_stream is None for f in config.flows):
        paths.append(Path(config.checkpoint_file + ".lock"))
    return paths


def state_directories(config: AgentConfig) -> list[tuple[str, Path]]:
    """The directories that hold the state ``config`` uses, each with the key that names it."""
    dirs: list[tuple[str, Path]] = []
    if any(f.local_stream is not None for f in config.flows):
        dirs.append(("localStore.directory", Path(config.local_store_directory)))
    if any(f.local_stream is None for f in config.flows):
        dirs.append(("checkpointFile", Path(config.checkpoint_file).parent))
    return dirs


def check_state_directories(config: AgentConfig) -> None:
    """AgentError (exit 1) naming the key and the path when a state directory is not one.

    Decision: exit 1, not 78. The key's value is a well-formed path, and the configuration is
    right as written: what is wrong is a file that sits where the directory belongs, which an
    operator fixes by moving the file, not by editing the configuration; ``check`` may also run on
    another machine than ``run``. systemd retries 1 every few seconds and never retries 78, so a
    fixed machine comes back by itself.
    """
    for key, directory in state_directories(config):
        path = directory
        while not os.path.lexists(path) and path != path.parent:
            path = path.parent  # the nearest part of it that exists: mkdir would stop there
        if os.path.lexists(path) and not path.is_dir():
            where = "it" if path == directory else f"{path} above it"
            raise AgentError(
                f"{key} is {directory}, but {where} is not a directory: the agent keeps "
                f"its state and lock file there. Move {path} aside or point {key} at a "
                "directory (the configuration is well formed; this machine's files are not)"
            )


class InstanceLock:
    """The exclusive locks this process holds, by lock-file path."""

    def __init__(self) -> None:
        self.held: dict[Path, int] = {}

    def acquire(self, config: AgentConfig) -> None:
        """Lock every piece of state ``config`` uses (all of them, or none and AlreadyRunning)."""
        check_state_directories(config)  # else "cannot create the lock file …: File exists"
        taken: list[Path] = []
        try:
            for path in state_locks(config):
                if path not in self.held:
                    self.held[path] = _lock(path)
                    taken.append(path)
        except BaseException:
            for path in taken:
                os.close(self.held.pop(path))
            raise

    def release(self) -> None:
        for fd in self.held.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.held.clear()

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_PID_BYTES = 32  # a lock holds a pid and a newline; more than this was never written as a lock


def _open_lock_file(path: Path) -> int:
    """Create the lock file, or open the one a previous agent created; never through a link."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = os.open(path, flags | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AgentError(
                f"the lock file {path} is a symbolic link; a lock file never is, so it was not "
                "followed (a link planted there would make the agent overwrite its target). "
                "Remove it and find out who created it."
            ) from exc
        raise AgentError(f"cannot create the lock file {path}: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else "a hard link"
        raise AgentError(
            f"the lock file {path} is {what}; the agent only uses a lock file it created. "
            "Remove it and find out who created it."
        )
    return fd


def _lock(path: Path) -> int:
    fd = _open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, _PID_BYTES, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f"pid {holder}" if holder.isdigit() else "another process"
        raise AlreadyRunning(
            f"another kinesis-agent ({who}) is running on the state locked by {path}; "
            "two agents on one checkpoint file or store would ship every line twice — "
            "stop it first, or give this configuration its own checkpointFile / "
            "localStore.directory"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise AgentError(f"cannot lock {path}: {exc.strerror}") from exc
    held = os.pread(fd, _PID_BYTES + 1, 0)
    text = held.strip()
    if len(held) > _PID_BYTES or (text and not text.isdigit()):
        os.close(fd)
        raise AgentError(
            f"{path} holds something other than a pid, so it is not a lock file this agent "
            "wrote; it was left unchanged. Move it aside to let the agent create its lock."
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
