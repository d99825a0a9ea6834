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
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import accumulate

from agent.records import Record

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
KPL_OVERHEAD = len(KPL_MAGIC) + 16  # magic + MD5 trailer
KINESIS_MAX_RECORD_BYTES = 1024 * 1024  # data + partition key of one Kinesis record
# Room a lone user record needs beside its data: a 256-char key (table entry and outer key),
# the record's own framing and the magic/MD5. A bigger record is sent plain (sinks/kinesis.py).
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
    size: int = 0  # what the entry counts toward a call's byte limit (data, plus key for Kinesis)


@cache
def _small_varints() -> tuple[bytes, ...]:
    """The 1-2 byte varints (most lengths and indexes), made at the first aggregation: making
    them at import was ~5 ms of the start-up of every Kinesis and Firehose flow."""
    return tuple(varint(i) for i in range(1 << 14))


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
    if shared_key is not None:
        return _aggregate_shared(records, shared_key, max_bytes)
    # One flat loop: this runs for every user record, so no per-record method calls.
    out: list[Aggregate] = []
    limit = max_bytes - KPL_OVERHEAD
    keys: dict[str, int] = {}
    key_parts: list[bytes] = []
    parts: list[bytes] = []
    members: list[Record] = []
    pb_size = 0
    outer_key_len = 0
    user_bytes = 0
    first_key = ""
    key = shared_key() if shared_key is not None else ""
    sv = _small_varints()
    for record in records:
        data = record.data
        n = len(data)
        if shared_key is None:
            key = key_for(record)
        index = keys.get(key)
        key_cost = 0
        if index is None:
            kb = len(key.encode())
            key_cost = 1 + varint_len(kb) + kb
        i = len(keys) if index is None else index
        inner = (
            (3 if i < 128 else 2 + varint_len(i))
            + (1 if n < 128 else 2 if n < 16384 else varint_len(n))
            + n
        )
        cost = (
            key_cost + inner + (2 if inner < 128 else 3 if inner < 16384 else 1 + varint_len(inner))
        )
        if members and pb_size + cost + outer_key_len > limit:
            out.append(_build(key_parts, parts, members, first_key, user_bytes))
            keys, key_parts, parts, members = {}, [], [], []
            pb_size = user_bytes = 0
            if shared_key is not None:
                key = shared_key()
            index = None
        if index is None:
            index = keys[key] = len(keys)
            kb_bytes = key.encode()
            part = _KEY_TABLE_TAG + varint(len(kb_bytes)) + kb_bytes
            key_parts.append(part)
            pb_size += len(part)
        if not members:
            first_key = key
            outer_key_len = len(key.encode())
        head = _PK_INDEX_TAG + (sv[index] if index < 16384 else varint(index)) + _DATA_TAG
        head += sv[n] if n < 16384 else varint(n)
        inner = len(head) + n
        head = _RECORDS_TAG + (sv[inner] if inner < 16384 else varint(inner)) + head
        parts.append(head)
        parts.append(data)
        pb_size += len(head) + n
        members.append(record)
        user_bytes += n
    if members:
        out.append(_build(key_parts, parts, members, first_key, user_bytes))
    return out


def _build(
    key_parts: list[bytes], parts: list[bytes], members: list[Record], key: str, user_bytes: int
) -> Aggregate:
    pb = b"".join(key_parts + parts)
    data = b"".join((KPL_MAGIC, pb, hashlib.md5(pb).digest()))
    return Aggregate(data, members, key, user_bytes, len(data) + len(key.encode()))


SHARED_HEAD_CACHE = 1 << 14  # data lengths whose record framing is precomputed (1-2 byte varints)


@cache
def _shared_heads() -> tuple[bytes, ...]:
    """The framing before a user record's data of length n (n < SHARED_HEAD_CACHE), key index 0."""
    return tuple(_shared_head(n) for n in range(SHARED_HEAD_CACHE))


def _shared_head(n: int) -> bytes:
    head = _PK_INDEX_TAG + b"\x00" + _DATA_TAG + varint(n)
    return _RECORDS_TAG + varint(len(head) + n) + head


def _aggregate_shared(
    records: Sequence[Record], shared_key: Callable[[], str], max_bytes: int
) -> list[Aggregate]:
    """kpl_aggregate with one key per aggregate: every record's framing depends only on its length.

    So the framings are looked up, the cut points found by bisecting the running sizes, and each
    aggregate joined from slices: no Python-level work per record beyond list building in C.
    """
    datas = [r.data for r in records]
    lens = list(map(len, datas))
    if lens and max(lens) < SHARED_HEAD_CACHE:
        table = _shared_heads()
        heads = [table[n] for n in lens]
    else:
        heads = [_shared_head(n) for n in lens]
    ends = list(accumulate(map(len, heads), initial=0))  # ends[i]: framing bytes before record i
    total = list(accumulate(lens, initial=0))  # total[i]: data bytes before record i
    sizes = [e + t for e, t in zip(ends, total, strict=True)]  # protobuf record bytes before i
    limit = max_bytes - KPL_OVERHEAD
    out: list[Aggregate] = []
    start, count = 0, len(datas)
    while start < count:
        key = shared_key()
        kb = key.encode()
        key_part = _KEY_TABLE_TAG + varint(len(kb)) + kb
        # the most records from start whose protobuf, key table entry and outer key fit the limit
        end = bisect_right(sizes, sizes[start] + limit - len(key_part) - len(kb), start + 1) - 1
        end = min(max(end, start + 1), count)  # a record too big to share goes alone
        parts: list[bytes] = [b""] * (2 * (end - start) + 2)
        parts[0] = KPL_MAGIC
        parts[1] = key_part
        parts[2::2] = heads[start:end]
        parts[3::2] = datas[start:end]
        body = b"".join(parts)
        data = body + hashlib.md5(memoryview(body)[len(KPL_MAGIC) :]).digest()
        members = list(records[start:end])
        out.append(Aggregate(data, members, key, total[end] - total[start], len(data) + len(kb)))
        start = end
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
            out.append(Aggregate(b"".join(parts), members, "", size, size))
            parts, members, size = [], [], 0
        parts.append(data)
        members.append(record)
        size += len(data)
    if members:
        out.append(Aggregate(b"".join(parts), members, "", size, size))
    return out
