"""One agent per state: two agents on one checkpoint file or store would ship every line twice.

Each piece of state a configuration uses (the checkpoint database of the AWS flows, the embedded
store of the local ones) gets an exclusive ``flock`` on a lock file beside it, held for the life
of the process. The kernel drops the lock when the process dies, SIGKILL included, so a crash
never leaves a stale lock behind; the pid written into the file only names the holder in the
error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
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


class InstanceLock:
    """The exclusive locks this process holds, by lock-file path."""

    def __init__(self) -> None:
        self.held: dict[Path, int] = {}

    def acquire(self, config: AgentConfig) -> None:
        """Lock every piece of state ``config`` uses (all of them, or none and AlreadyRunning)."""
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


def _lock(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AgentError(f"cannot create the lock file {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
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
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
