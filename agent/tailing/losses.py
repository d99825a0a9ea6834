"""Data that leaves before it was read is never silent: a warning naming the file, and counters.

A file the agent knows (open, or from a checkpoint) that is truncated without a copy, replaced
(another file at its inode), or gone when the agent starts (deleted, renamed out of the pattern,
compressed by logrotate's ``delaycompress``) before it was read to its end took bytes with it.
How many is known from the size last seen of it (stored with its checkpoint): the warning gives the
number and ``unread_bytes_lost`` counts it. Where the size was never seen (a checkpoint from before
sizes were stored) the number is unknowable: the warning says so and only ``files_lost`` counts it.
Bytes written after the size was last seen are unknowable too: the number is then a lower bound.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from agent.observability.metrics import FlowMetrics
from agent.records import Checkpoint, FileId
from agent.tailing.tailer import FileAcks

log = logging.getLogger(__name__)

# How a file that went after logrotate's copy lost its bytes (only what the copy lacks is lost).
AFTER_COPY = "was truncated after logrotate's copy (written between the copy and the truncate)"


def lost(metrics: FlowMetrics, path: str, *, size: int | None, read_to: int, how: str) -> bool:
    """Count and log what a file that went took with it; True if anything (or an unknown) was lost."""
    if size is None:
        metrics.files_lost += 1
        log.warning(
            "%s: %s %s after being read to offset %d; its size was never recorded (a checkpoint "
            "from an older version), so whether bytes were unread, and how many, is unknown",
            metrics.flow_id,
            path,
            how,
            read_to,
        )
        return True
    unread = size - read_to
    if unread <= 0:
        return False
    metrics.files_lost += 1
    metrics.unread_bytes_lost += unread
    log.warning(
        "%s: %s %s before it was read to its end: %d bytes unread are lost (read to offset %d of "
        "at least %d)",
        metrics.flow_id,
        path,
        how,
        unread,
        read_to,
        size,
    )
    return True


def judge_checkpoints(
    metrics: FlowMetrics,
    checkpoints: Iterable[Checkpoint],
    *,
    resumed: set[FileId],
    present: set[tuple[int, int]],
    replaced: set[FileId],
    continued: dict[FileId, int],
    still_at: Callable[[str, tuple[int, int]], bool],
) -> list[FileAcks]:
    """After the first scan (and its backlog): the checkpointed files that went while away.

    ``resumed``: identities open again; ``present``: inodes the scan found; ``replaced``: identities
    whose inode now holds other bytes; ``continued``: identities a copy continues, with the copy's
    size (a copytruncate while the agent was away: only what the copy lacks is lost);
    ``still_at``: is the inode still at the checkpoint's path (a scan that could not read a
    directory finds nothing there, and a file it missed is not gone).
    Returns the rows to store so that a loss is reported once, not at every start.
    """
    rows: list[FileAcks] = []
    for c in checkpoints:
        fid = c.file
        if fid in resumed:
            continue
        there = fid.inode in present or still_at(c.path, fid.inode)
        if there and fid not in replaced:
            continue  # still there: waiting to be opened (too short, unreadable for now)
        copy_size = continued.get(fid)
        if copy_size is not None:
            how = AFTER_COPY
            read_to = max(c.offset, copy_size)
        elif there:
            how = "was truncated or replaced while the agent was stopped"
            read_to = c.offset
        else:
            how = "is gone (deleted, renamed out of the pattern or compressed)"
            read_to = c.offset
        if lost(metrics, c.path, size=c.size, read_to=read_to, how=how):
            # reported: stored as read to its end, so the next start does not report it again
            acks = FileAcks(c.flow, fid, c.path, c.offset, size=c.offset)
            acks.dirty = True
            rows.append(acks)
    return rows
