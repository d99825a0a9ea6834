"""Shard iterators that carry their own position: no server-side state, so consumers are unlimited.

An iterator is the stream, the shard, the store counter reading continues *after*, the stream's
creation time (a deleted and re-created stream does not inherit old iterators) and the time the
iterator was issued, sealed with an HMAC-SHA256 whose key lives in the store directory. So any
number of consumers hold their own positions, a restarted server (or the agent's endpoint and a
standalone ``serve`` on the same store) accepts iterators the other issued, and nobody can forge a
position. Like Kinesis's, an iterator expires five minutes after it was issued.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from agent.endpoint.errors import ApiError, invalid

log = logging.getLogger(__name__)

KEY_FILE = "endpoint.key"
KEY_BYTES = 32
MAC_BYTES = 16
ITERATOR_LIFETIME = 300.0  # seconds, as Kinesis
_VERSION = 1
_HEAD = struct.Struct(">BIQdQ")  # version, shard index, after, stream created, issued (ms)


@dataclass(frozen=True, slots=True)
class IteratorState:
    """Where a consumer is: it reads the records of ``shard`` with counters above ``after``."""

    stream: str
    shard: int
    after: int
    created: float
    issued_ms: int


class IteratorCodec:
    """Seals and opens iterators with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def seal(self, state: IteratorState) -> str:
        payload = (
            _HEAD.pack(_VERSION, state.shard, state.after, state.created, state.issued_ms)
            + state.stream.encode()
        )
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(payload + mac).decode()

    def open(self, token: object, now: float) -> IteratorState:
        """The state in ``token``; InvalidArgumentException if forged, ExpiredIterator if old."""
        if not isinstance(token, str) or not 1 <= len(token) <= 512:
            raise invalid("ShardIterator must be a string of 1 to 512 characters")
        try:
            raw = base64.urlsafe_b64decode(token.encode())
        except (binascii.Error, ValueError):
            raise invalid(f"Invalid ShardIterator: {token[:64]}") from None
        payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        good = hmac.new(self._key, payload, hashlib.sha256).digest()[:MAC_BYTES]
        if len(payload) <= _HEAD.size or not hmac.compare_digest(mac, good):
            raise invalid(f"Invalid ShardIterator: {token[:64]}")
        version, shard, after, created, issued_ms = _HEAD.unpack_from(payload)
        if version != _VERSION:
            raise invalid("ShardIterator of another version of this endpoint")
        if now * 1000 - issued_ms > ITERATOR_LIFETIME * 1000:
            raise ApiError(
                "ExpiredIteratorException",
                f"Iterator expired. The iterator was created at time {issued_ms} while right now "
                f"it is {int(now * 1000)} which is further in the future than the tolerated "
                "delay of 300000 milliseconds.",
            )
        stream = payload[_HEAD.size :].decode()
        return IteratorState(stream, shard, after, created, issued_ms)


def load_key(directory: Path) -> bytes:
    """The store's iterator key, made once (mode 0600) and shared by every server on the store.

    When the directory cannot be written (a read-only store), a key for this process only:
    iterators then do not survive a restart, which is logged.
    """
    path = directory / KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
    tmp = directory / f"{KEY_FILE}.new-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a key another server made meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
        log.warning("%s is damaged (%d bytes): shard iterators are per process", path, len(key))
    except OSError as exc:
        log.warning(
            "cannot keep a shard-iterator key in %s (%s): iterators will not survive a restart",
            directory,
            exc.strerror,
        )
    return os.urandom(KEY_BYTES)
