"""Who a file is: (dev, inode) plus a fingerprint of its head, so reused inodes and copies are told apart."""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Callable
from typing import Generic, TypeVar

from agent.records import FINGERPRINT_BYTES, FileId

T = TypeVar("T")


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def fingerprint(fd: int, *, force: bool = False) -> tuple[int, bytes] | None:
    """``(length, hash)`` of the file's head, or None while it is too short to tell.

    The head is the first KiB, or, for a shorter file, everything up to its last complete line.
    ``force`` (an idle file whose only line never ends) takes whatever bytes there are.
    """
    return fingerprint_of(os.pread(fd, FINGERPRINT_BYTES, 0), force=force)


def head_matches(fd: int, fp_len: int, fp_hash: bytes) -> bool:
    """Does the file still start with the bytes it was fingerprinted by?"""
    head = os.pread(fd, fp_len, 0)
    return len(head) == fp_len and digest(head) == fp_hash


def file_id(st: os.stat_result, fp: tuple[int, bytes]) -> FileId:
    return FileId(st.st_dev, st.st_ino, fp[0], fp[1])


def fingerprint_of(head: bytes, *, force: bool = False) -> tuple[int, bytes] | None:
    """``fingerprint`` of a head already read (at most FINGERPRINT_BYTES of it are used)."""
    if len(head) >= FINGERPRINT_BYTES:
        return FINGERPRINT_BYTES, digest(head[:FINGERPRINT_BYTES])
    end = head.rfind(b"\n") + 1
    if end == 0:
        if force and head:
            return len(head), digest(head)
        return None
    return end, digest(head[:end])


class HeadIndex(Generic[T]):
    """Values by head fingerprint, found from a file's head in time independent of their number.

    A fingerprint's length is the first KiB, a line end, or (forced, an idle unterminated line)
    shorter than the head's first line: a head is looked up at its own line ends, and only at
    the known lengths that fit before its first newline.
    """

    __slots__ = ("_lengths", "_sorted", "_table")

    def __init__(self) -> None:
        self._table: dict[tuple[int, bytes], list[T]] = {}
        self._lengths: dict[int, int] = {}
        self._sorted: list[int] = []

    def add(self, fp_len: int, fp_hash: bytes, value: T) -> None:
        self._table.setdefault((fp_len, fp_hash), []).append(value)
        if fp_len not in self._lengths:
            bisect.insort(self._sorted, fp_len)
            self._lengths[fp_len] = 0
        self._lengths[fp_len] += 1

    def remove(self, fp_len: int, fp_hash: bytes, value: T) -> None:
        values = self._table.get((fp_len, fp_hash))
        if values is None or value not in values:
            return
        values.remove(value)
        if not values:
            del self._table[(fp_len, fp_hash)]
        self._lengths[fp_len] -= 1
        if not self._lengths[fp_len]:
            del self._lengths[fp_len]
            self._sorted.remove(fp_len)

    def lookup(
        self, head: bytes, digests: dict[int, bytes], digest_at: Callable[[int], bytes | None]
    ) -> list[T]:
        """Every value whose fingerprint the head starts with (``digests``: at its natural lengths)."""
        out: list[T] = []
        table, lengths = self._table, self._lengths
        for length, value in digests.items():
            if length in lengths:
                out += table.get((length, value), ())
        nl = head.find(b"\n")
        limit = len(head) if nl < 0 else nl
        for length in self._sorted[: bisect.bisect_right(self._sorted, limit)]:
            if length in digests:
                continue
            value2 = digest_at(length)
            if value2 is not None:
                out += table.get((length, value2), ())
        return out
