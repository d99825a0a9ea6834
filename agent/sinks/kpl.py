"""Record aggregation: KPL aggregated records for Kinesis, newline-packed records for Firehose.

The KPL aggregation format (published with the Kinesis Producer Library; KCL and the
``aws-kinesis-agg`` package read it) is::

    F3 89 9A C2  |  protobuf AggregatedRecord  |  MD5(protobuf bytes), 16 bytes

    message AggregatedRecord {
      repeated string partition_key_table     = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records                 = 3;
    }
    message Record {
      required uint64 partition_key_index     = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes  data                    = 3;
    }

The few protobuf wire-format rules this needs (varints, length-delimited fields) are written out
here rather than pulling in a protobuf runtime for two messages. Each aggregate keeps the user
records it carries, so one acknowledged Kinesis record acknowledges every one of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.records import Record

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
KPL_OVERHEAD = len(KPL_MAGIC) + 16  # magic + MD5 trailer
KINESIS_MAX_RECORD_BYTES = 1024 * 1024  # data + partition key of one Kinesis record
# Room a lone user record needs beside its data: a 256-char key (table entry and outer key),
# the record's own framing and the magic/MD5. The batcher cuts records to fit under this.
KPL_PER_RECORD_RESERVE = KPL_OVERHEAD + 2 * (256 * 4 + 3) + 16

_KEY_TABLE_TAG = b"\x0a"  # field 1, length-delimited
_RECORDS_TAG = b"\x1a"  # field 3, length-delimited
_PK_INDEX_TAG = b"\x08"  # field 1, varint
_DATA_TAG = b"\x1a"  # field 3, length-delimited


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint_len(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


@dataclass(slots=True)
class Aggregate:
    """One record as sent to the destination and the user records packed into it, in order."""

    data: bytes
    records: list[Record]
    partition_key: str = ""
    user_bytes: int = 0


@dataclass(slots=True)
class _KplBuilder:
    keys: dict[str, int] = field(default_factory=dict)
    key_parts: list[bytes] = field(default_factory=list)
    record_parts: list[bytes] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    first_key: str = ""
    pb_size: int = 0
    user_bytes: int = 0

    def cost(self, key: str, data_len: int) -> tuple[int, int]:
        """(protobuf bytes this record adds, outer key bytes if it is the first)."""
        added = 0
        index = self.keys.get(key)
        if index is None:
            index = len(self.keys)
            kb = len(key.encode())
            added += 1 + varint_len(kb) + kb
        inner = 1 + varint_len(index) + 1 + varint_len(data_len) + data_len
        added += 1 + varint_len(inner) + inner
        outer_key = 0 if self.records else len(key.encode())
        return added, outer_key

    def add(self, record: Record, key: str) -> None:
        index = self.keys.get(key)
        if index is None:
            index = self.keys[key] = len(self.keys)
            kb = key.encode()
            part = _KEY_TABLE_TAG + varint(len(kb)) + kb
            self.key_parts.append(part)
            self.pb_size += len(part)
        if not self.records:
            self.first_key = key
        data = record.data
        inner = _PK_INDEX_TAG + varint(index) + _DATA_TAG + varint(len(data))
        inner_len = len(inner) + len(data)
        head = _RECORDS_TAG + varint(inner_len) + inner
        self.record_parts.append(head)
        self.record_parts.append(data)
        self.pb_size += len(head) + len(data)
        self.records.append(record)
        self.user_bytes += len(data)

    def total(self) -> int:
        return KPL_OVERHEAD + self.pb_size + len(self.first_key.encode())

    def build(self) -> Aggregate:
        pb = b"".join(self.key_parts + self.record_parts)
        data = b"".join((KPL_MAGIC, pb, hashlib.md5(pb).digest()))
        return Aggregate(data, self.records, self.first_key, self.user_bytes)


def kpl_aggregate(
    records: Sequence[Record],
    key_for: Callable[[Record], str],
    *,
    max_bytes: int = KINESIS_MAX_RECORD_BYTES,
    shared_key: Callable[[], str] | None = None,
) -> list[Aggregate]:
    """Pack user records, in order, into KPL aggregated records of at most ``max_bytes``.

    ``max_bytes`` counts the aggregated data plus its partition key (the Kinesis record limit).
    With ``shared_key`` (RANDOM keys) every aggregate gets one fresh key that all its user records
    share, instead of a table entry per record; otherwise each user record keeps ``key_for(record)``
    and the aggregate is placed by its first record's key. A user record too big to share an
    aggregate goes alone (the batcher keeps records under the limit).
    """
    out: list[Aggregate] = []
    builder = _KplBuilder()
    key = shared_key() if shared_key is not None else ""
    for record in records:
        if shared_key is None:
            key = key_for(record)
        added, outer_key = builder.cost(key, len(record.data))
        if builder.records and builder.total() + added + outer_key > max_bytes:
            out.append(builder.build())
            builder = _KplBuilder()
            if shared_key is not None:
                key = shared_key()
        builder.add(record, key)
    if builder.records:
        out.append(builder.build())
    return out


def newline_aggregate(records: Sequence[Record], max_bytes: int) -> list[Aggregate]:
    """Firehose ``aggregatedRecordSizeBytes``: whole newline-terminated records packed up to the size.

    A record missing its final newline gets one, so records never run together in the object.
    A record longer than ``max_bytes`` by itself travels alone.
    """
    out: list[Aggregate] = []
    parts: list[bytes] = []
    members: list[Record] = []
    size = 0
    for record in records:
        data = record.data if record.data.endswith(b"\n") else record.data + b"\n"
        if members and size + len(data) > max_bytes:
            out.append(Aggregate(b"".join(parts), members, user_bytes=size))
            parts, members, size = [], [], 0
        parts.append(data)
        members.append(record)
        size += len(data)
    if members:
        out.append(Aggregate(b"".join(parts), members, user_bytes=size))
    return out
