"""Who a file is: (dev, inode) plus a fingerprint of its head, so reused inodes and copies are told apart."""

from __future__ import annotations

import hashlib
import os

from agent.records import FINGERPRINT_BYTES, FileId


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def fingerprint(fd: int, *, force: bool = False) -> tuple[int, bytes] | None:
    """``(length, hash)`` of the file's head, or None while it is too short to tell.

    The head is the first KiB, or, for a shorter file, everything up to its last complete line.
    ``force`` (an idle file whose only line never ends) takes whatever bytes there are.
    """
    head = os.pread(fd, FINGERPRINT_BYTES, 0)
    if len(head) >= FINGERPRINT_BYTES:
        return FINGERPRINT_BYTES, digest(head)
    end = head.rfind(b"\n") + 1
    if end == 0:
        if force and head:
            return len(head), digest(head)
        return None
    return end, digest(head[:end])


def head_matches(fd: int, fp_len: int, fp_hash: bytes) -> bool:
    """Does the file still start with the bytes it was fingerprinted by?"""
    head = os.pread(fd, fp_len, 0)
    return len(head) == fp_len and digest(head) == fp_hash


def file_id(st: os.stat_result, fp: tuple[int, bytes]) -> FileId:
    return FileId(st.st_dev, st.st_ino, fp[0], fp[1])
