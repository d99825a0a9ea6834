"""The values that travel through a flow: file identities, checkpoints, and records as spans."""

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


class SpanSource(Protocol):
    """A file's ack tracker, as a span sees it: it learns when its spans are acknowledged
    (``advance``) and where one was cut in two."""

    def advance(self) -> None: ...

    def insert_before(self, span: Span, head: Span) -> None: ...


class Record:
    """One record cut from a span for a destination that takes records one by one, with its
    place ``[start, end)`` in its file; ``source`` is that span (None: a record of no file).
    """

    __slots__ = ("acked", "data", "end", "partition_key", "source", "start")

    def __init__(self, data: bytes, source: Span | None, start: int, end: int) -> None:
        self.data = data
        self.source = source
        self.start = start
        self.end = end
        self.acked = False
        self.partition_key: str | None = None

    def __repr__(self) -> str:
        return f"Record({self.data[:40]!r}, span=[{self.start}, {self.end}))"


class Span:
    """The records of one read of one file, travelling as one object from the reader to the sink.

    Record ``i`` is ``datas[i]`` (after processing) and covers ``[offsets[i], offsets[i + 1])``
    of the file; the records are contiguous, so the span covers ``[start, end)`` and is
    acknowledged as that one range. A read costs one span, one budget charge, one place in the
    queues and one acknowledgement, not one of each per line (a million lines a second made
    those most of the pipeline's work). A span is cut into ``Record`` objects only where a
    destination needs them one by one (``records()``: Kinesis and Firehose calls retry entries
    one by one), and cut in two where a batch ends inside it (``split``).
    """

    __slots__ = (
        "_prefix",
        "_records",
        "acked",
        "datas",
        "delivered_to",
        "offsets",
        "size",
        "source",
    )

    def __init__(self, datas: list[bytes], offsets: list[int], source: SpanSource) -> None:
        if len(offsets) != len(datas) + 1:
            raise ValueError(f"{len(offsets)} offsets for {len(datas)} records")
        self.datas = datas
        self.offsets = offsets
        self.source = source
        self.size = sum(map(len, datas))  # bytes of data
        self.acked = False
        # cut into records: how many of the first are delivered, and where they end in the file
        self._records: list[Record] = []
        self._prefix = 0
        self.delivered_to = offsets[0]

    @property
    def start(self) -> int:
        return self.offsets[0]

    @property
    def end(self) -> int:
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.datas)

    def __repr__(self) -> str:
        return f"Span({len(self.datas)} records, [{self.start}, {self.end}))"

    def split(self, n: int) -> Span:
        """Cut after the first ``n`` records: they become a new span (returned), placed before
        this one wherever this one waits to be acknowledged; this one keeps the rest."""
        if not 0 < n < len(self.datas):
            raise ValueError(f"cannot cut a span of {len(self.datas)} records after {n}")
        head = Span(self.datas[:n], self.offsets[: n + 1], self.source)
        self.datas = self.datas[n:]
        self.offsets = self.offsets[n:]
        self.size -= head.size
        self.source.insert_before(self, head)
        return head

    def records(self) -> list[Record]:
        """The records, one object each, acknowledged to this span: its checkpoint moves as far
        as its first records are delivered (a restart re-sends no delivered head), and the last
        one acknowledges the span. Cut once: a second set would count the first's acks."""
        if self._records or self.acked:
            raise RuntimeError(f"{self!r} was already cut into records")
        offsets = self.offsets
        out = [
            Record(data, self, start, end)
            for data, start, end in zip(self.datas, offsets, offsets[1:], strict=False)
        ]
        self._records = out
        return out

    def ack(self, record: Record) -> None:
        """One record of ``records()`` delivered."""
        if record.acked:
            return
        record.acked = True
        records, n = self._records, self._prefix
        while n < len(records) and records[n].acked:
            n += 1
        if n != self._prefix:
            self._prefix = n
            self.delivered_to = self.offsets[n]
            if n == len(records):
                self.acked = True
                # the records point back at this span: let the pair go without the collector
                # (it runs seldom, gcpolicy.py; a retried backlog's spans piled up behind it)
                self._records = []
            self.source.advance()
