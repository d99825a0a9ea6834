"""The values of the stream store: streams, shards, stored records, iterator positions, sequence numbers.

Sequence numbers are Kinesis-like decimal strings of 56 digits: ``SEQUENCE_BASE`` plus a counter
that the whole store shares and never reuses (it survives trimming and restarts). So a sequence
number is unique across every stream of the store, increases in write order inside a shard *and*
across the shards of a stream, and compares the same as a string or as an integer.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
SEQUENCE_BASE = 49 * 10**54  # 56 digits, the length of real Kinesis sequence numbers
MAX_SEQUENCE = 2**63 - 1  # SQLite's INTEGER PRIMARY KEY
MAX_PARTITION_KEY_CHARS = 256
MAX_SHARDS = 1024
MAX_RETENTION_HOURS = 8760
SHARD_ID_PREFIX = "shardId-"


def valid_stream_name(name: str) -> bool:
    """Kinesis stream-name rules; a valid name never contains a path separator."""
    return STREAM_NAME.fullmatch(name) is not None


def shard_id(index: int) -> str:
    """``shardId-000000000003`` for index 3, as Kinesis names the shards CreateStream makes."""
    return f"{SHARD_ID_PREFIX}{index:012d}"


def shard_index(text: str) -> int | None:
    """The index in ``shardId-000000000003`` (or a bare ``3``), None when it is neither."""
    digits = text.removeprefix(SHARD_ID_PREFIX)
    ok = digits.isascii() and digits.isdigit() and len(digits) <= 12  # int() refuses '²'
    return int(digits) if ok else None


def format_sequence(counter: int) -> str:
    return str(SEQUENCE_BASE + counter)


def parse_sequence(text: str) -> int:
    """The store counter behind a sequence number string; ValueError when it cannot be ours."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"a sequence number is a decimal string, not {text!r}")
    counter = int(text) - SEQUENCE_BASE
    if not 0 <= counter <= MAX_SEQUENCE:
        raise ValueError(f"{text} is not a sequence number of this store")
    return counter


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard: its id and the inclusive range of 128-bit MD5 hash keys it owns."""

    shard_id: str
    starting_hash_key: int
    ending_hash_key: int


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream as created: shards never change (no resharding), retention can only be read."""

    name: str
    shard_count: int
    retention_hours: int
    created: float
    shards: tuple[ShardInfo, ...]


@dataclass(frozen=True, slots=True)
class ShardStats:
    """What a shard holds now (for ``stream describe``); the bounds are None when it is empty."""

    shard_id: str
    records: int
    bytes: int
    first_sequence_number: str | None
    last_sequence_number: str | None
    first_arrival: float | None
    last_arrival: float | None


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as a reader gets it back, with what Kinesis GetRecords would return beside the data."""

    stream: str
    shard_id: str
    sequence_number: str
    partition_key: str
    arrival_timestamp: float
    data: bytes


class IteratorType(enum.Enum):
    """Where a reader starts, named as GetShardIterator's ShardIteratorType."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_SEQUENCE_NUMBER = "AT_SEQUENCE_NUMBER"
    AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"
    AT_TIMESTAMP = "AT_TIMESTAMP"


@dataclass(frozen=True, slots=True)
class Position:
    """A starting position; build it with the class methods, which check their argument.

    On a stream with several shards a sequence number or a timestamp applies to every shard:
    each starts at its first record at (or after) that point of the stream's write order.
    """

    type: IteratorType
    sequence: int | None = None
    timestamp: float | None = None

    @classmethod
    def trim_horizon(cls) -> Position:
        return cls(IteratorType.TRIM_HORIZON)

    @classmethod
    def latest(cls) -> Position:
        return cls(IteratorType.LATEST)

    @classmethod
    def at_sequence_number(cls, sequence_number: str) -> Position:
        return cls(IteratorType.AT_SEQUENCE_NUMBER, sequence=parse_sequence(sequence_number))

    @classmethod
    def after_sequence_number(cls, sequence_number: str) -> Position:
        return cls(IteratorType.AFTER_SEQUENCE_NUMBER, sequence=parse_sequence(sequence_number))

    @classmethod
    def at_timestamp(cls, timestamp: float) -> Position:
        return cls(IteratorType.AT_TIMESTAMP, timestamp=float(timestamp))


TRIM_HORIZON = Position.trim_horizon()
LATEST = Position.latest()
