"""Spans as the reader hands them on: one read's records of one file, registered with it."""

from __future__ import annotations

from itertools import accumulate

from agent.records import FileId, Span
from agent.tailing.tailer import FileAcks


def file_acks(name: str = "/l/a.log", ino: int = 2) -> FileAcks:
    return FileAcks("f", FileId(1, ino, 16, bytes([ino % 256]) * 16), name, 0)


def span_of(datas: list[bytes], acks: FileAcks | None = None, start: int | None = None) -> Span:
    """``datas`` as one span, each record as long in the file as its data, registered with
    ``acks`` (a new file's when None) after what it already holds."""
    acks = acks or file_acks()
    if start is None:
        start = acks.pending[-1].end if acks.pending else acks.checkpoint
    span = Span(datas, list(accumulate(map(len, datas), initial=start)), acks)
    acks.register(span)
    return span
