"""The values that travel through a flow: file identities, checkpoints and records with their spans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

FINGERPRINT_BYTES = 1024


@dataclass(frozen=True, slots=True)
class FileId:
    """Who a file is: (dev, inode) plus a hash of its first ``fp_len`` bytes.

    A reused inode with another head is another file; a copy (new inode, same head) is recognised
    by the fingerprint alone.
    """

    dev: int
    ino: int
    fp_len: int
    fp_hash: bytes

    @property
    def inode(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    def __str__(self) -> str:
        return f"{self.dev}:{self.ino}:{self.fp_len}:{self.fp_hash.hex()[:12]}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The end of the highest contiguous acknowledged span of one file, as stored."""

    flow: str
    file: FileId
    path: str
    offset: int
    # the file's size when last seen, so that bytes a file took with it when it went before it
    # was read to its end can be counted; None when unknown (a row from before it was stored)
    size: int | None = None


class AckSource(Protocol):
    """Whoever produced a record and must learn when it is acknowledged (a file's ack tracker)."""

    def ack(self, record: Record) -> None: ...

    def unack(self, record: Record) -> None: ...


class Record:
    """One record and its span ``[start, end)`` in its source file.

    ``data`` is what is sent (after processing); ``start``/``end`` are offsets in the original
    file, so checkpoints never depend on what processors did to the bytes.
    """

    __slots__ = ("acked", "data", "end", "partition_key", "source", "start")

    def __init__(self, data: bytes, source: AckSource | None, start: int, end: int) -> None:
        self.data = data
        self.source = source
        self.start = start
        self.end = end
        self.acked = False
        self.partition_key: str | None = None

    def __repr__(self) -> str:
        return f"Record({self.data[:40]!r}, span=[{self.start}, {self.end}))"
