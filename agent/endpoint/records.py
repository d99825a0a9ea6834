"""The record-level operations: PutRecord(s), GetShardIterator, GetRecords.

GetRecords builds its JSON by hand: it is the hot path of every consumer, and a 10,000-record
page as dicts through ``json.dumps`` cost about twice the string joins below.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii as json_string  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

from agent.endpoint.errors import ApiError, invalid, not_found, throughput, validation
from agent.endpoint.iterators import IteratorState
from agent.endpoint.streams import describe, int_arg
from agent.errors import StoreError, StreamNotFound
from agent.hashspace import MAX_HASH_KEY
from agent.store import admin
from agent.store.model import (
    MAX_PARTITION_KEY_CHARS,
    SEQUENCE_BASE,
    Position,
    StreamInfo,
    parse_sequence,
    shard_index,
)
from agent.store.reader import _start_after

if TYPE_CHECKING:
    from agent.endpoint.api import Call

MAX_RECORD_BYTES = 1024 * 1024
MAX_PUT_ENTRIES = 500
MAX_PUT_BYTES = 5 * 1024 * 1024
MAX_GET_RECORDS = 10_000
MAX_GET_BYTES = 10 * 1024 * 1024
# binascii's strict mode refuses characters outside the alphabet and bad or misplaced padding.
# (pybase64 halves this cost, but the agent's runtime libraries are a fixed, short list.)


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _unb64(text: str, *, validate: bool) -> bytes:
    return binascii.a2b_base64(text, strict_mode=validate)


# a partition key of printable ASCII other than '"' and '\\' is its own JSON string body
_NEEDS_ESCAPE = re.compile(rb"[^\x20\x21\x23-\x5b\x5d-\x7e]")
SEQUENCE_DIGITS = len(str(SEQUENCE_BASE))


class Raw(bytes):
    """A response body already encoded as JSON."""


def _entry(entry: object, where: str) -> tuple[str, bytes, int | None]:
    """(partition key, data, explicit hash key) of one PutRecord(s) entry, checked."""
    if not isinstance(entry, dict):
        raise validation(f"{where} must be an object")
    key = entry.get("PartitionKey")
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_PARTITION_KEY_CHARS:
        raise validation(
            f"1 validation error detected: Value at '{where}.partitionKey' failed to satisfy "
            f"constraint: Member must have length between 1 and {MAX_PARTITION_KEY_CHARS}"
        )
    text = entry.get("Data")
    if not isinstance(text, str):
        raise validation(f"1 validation error detected: '{where}.data' must not be null")
    try:
        data = _unb64(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: a character outside ASCII
        raise ApiError("SerializationException", f"{where}.Data is not valid base64") from None
    if len(data) > MAX_RECORD_BYTES:
        raise validation(
            f"1 validation error detected: Value at '{where}.data' failed to satisfy "
            f"constraint: Member must have length less than or equal to {MAX_RECORD_BYTES}"
        )
    if len(data) + len(key.encode()) > MAX_RECORD_BYTES:
        raise invalid(_too_big(where, len(data) + len(key.encode())))
    hash_key = entry.get("ExplicitHashKey")
    explicit = None
    if hash_key is not None:
        # ASCII and at most 39 digits before int(): '²' or 5,000 digits made int() raise
        if (
            not isinstance(hash_key, str)
            or not (hash_key.isascii() and hash_key.isdigit() and len(hash_key) <= 39)
            or int(hash_key) > MAX_HASH_KEY
        ):
            raise invalid(
                f"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, {MAX_HASH_KEY}]"
                f". Specified value was {hash_key}"
            )
        explicit = int(hash_key)
    ordering = entry.get("SequenceNumberForOrdering")
    # Every sequence number this store gives is above every earlier one, so the ordering
    # Kinesis promises for it holds already; a malformed one is still refused.
    if ordering is not None and (
        not isinstance(ordering, str) or not (ordering.isascii() and ordering.isdigit())
    ):
        raise invalid(f"SequenceNumberForOrdering {ordering!r} is not a sequence number")
    return key, data, explicit


def _fast_entries(records: list[Any]) -> tuple[list[str], list[bytes], int] | None:
    """Keys, data and total bytes of plain entries (PartitionKey and Data only, all well
    formed), else None: the slow path then checks each entry and names the first bad one."""
    try:
        # a non-object entry raises TypeError on lookup; join, TypeError unless all keys are str
        keys = [e["PartitionKey"] for e in records]
        texts = [e["Data"] for e in records]
        key_bytes = len("".join(keys).encode())
    except (KeyError, TypeError):
        return None
    if sum(map(len, records)) != 2 * len(records):  # an entry with more than the two
        return None
    lengths = list(map(len, keys))
    if min(lengths) < 1 or max(lengths) > MAX_PARTITION_KEY_CHARS:
        return None
    try:
        datas = [_unb64(t, validate=True) for t in texts]
    except (binascii.Error, ValueError, TypeError):
        return None
    if max(map(len, datas)) + MAX_PARTITION_KEY_CHARS * 4 > MAX_RECORD_BYTES and any(
        len(d) + len(k.encode()) > MAX_RECORD_BYTES for k, d in zip(keys, datas, strict=True)
    ):
        return None  # the slow path names the record
    return keys, datas, key_bytes + sum(map(len, datas))


def _too_big(where: str, size: int) -> str:
    return (
        f"Record size exceeds 1 MiB: {where} holds {size} bytes of data and partition key "
        f"(at most {MAX_RECORD_BYTES})"
    )


def _put(call: Call, name: str, entries: list[tuple[str, bytes, int | None]]) -> list[Any]:
    """Store the entries the shard limits admit; (shard id, sequence) or None (throttled) each."""
    api = call.api
    keys = [k for k, _d, _h in entries]
    datas = [d for _k, d, _h in entries]
    hashes = [h for _k, _d, h in entries]
    explicit = hashes if any(h is not None for h in hashes) else None
    admitted = list(range(len(entries)))
    if api.limits is not None:
        shards = admin.placement(api.store, name, keys, explicit)
        admitted = [
            i
            for i, shard in enumerate(shards)
            if api.limits.admit_put(name, shard, len(datas[i]) + len(keys[i].encode()))
        ]
    if len(admitted) < len(entries):
        keep = admitted
        keys = [keys[i] for i in keep]
        datas = [datas[i] for i in keep]
        explicit = None if explicit is None else [explicit[i] for i in keep]
    try:
        result = api.store.put_columns(name, keys, datas, hash_keys=explicit) if keys else []
    except StreamNotFound:
        raise not_found(f"Stream {name} under account {api.account} not found.") from None
    out: list[Any] = [None] * len(entries)
    for i, answer in zip(admitted, result, strict=True):
        out[i] = answer
    return out


def put_record(call: Call) -> dict[str, Any]:
    name = call.stream_name()
    describe(call.api, name)
    [answer] = _put(call, name, [_entry(call.body, "record")])
    if answer is None:
        raise throughput(
            f"Rate exceeded for shard in stream {name} under account {call.api.account}."
        )
    shard, sequence = answer
    return {"ShardId": shard, "SequenceNumber": sequence, "EncryptionType": "NONE"}


def put_records(call: Call) -> dict[str, Any] | Raw:
    name = call.stream_name()
    records = call.body.get("Records")
    if not isinstance(records, list) or not 1 <= len(records) <= MAX_PUT_ENTRIES:
        count = len(records) if isinstance(records, list) else 0
        raise validation(
            f"1 validation error detected: Value at 'records' failed to satisfy constraint: "
            f"Member must have length between 1 and {MAX_PUT_ENTRIES} (it has {count})"
        )
    describe(call.api, name)
    fast = _fast_entries(records) if call.api.limits is None else None
    if fast is not None:
        keys, datas, size = fast
    else:
        entries = [_entry(e, f"records.{i + 1}.member") for i, e in enumerate(records)]
        size = sum(len(d) + len(k.encode()) for k, d, _h in entries)
    if size > MAX_PUT_BYTES:
        raise invalid(
            f"Records size exceeds 5 MB limit: the request holds {size} bytes of data and keys"
        )
    if fast is not None:
        try:
            result = call.api.store.put_columns(name, keys, datas)
        except StreamNotFound:
            raise not_found(f"Stream {name} under account {call.api.account} not found.") from None
        shard_ids, placement, first = result.columns()
        digits = len(str(first))
        if digits == len(str(first + len(placement) - 1)):
            # as in records_json: the counters are machine-size, their shared "4900…" once
            head = f'{{"SequenceNumber":"{str(SEQUENCE_BASE)[: SEQUENCE_DIGITS - digits]}'
            tails = [f'","ShardId":"{shard}"}}' for shard in shard_ids]
            answers_json = ",".join(
                [f"{head}{c}{tails[p]}" for c, p in enumerate(placement, first)]
            )
        else:
            base = SEQUENCE_BASE + first
            answers_json = ",".join(
                [
                    f'{{"SequenceNumber":"{base + i}","ShardId":"{shard_ids[p]}"}}'
                    for i, p in enumerate(placement)
                ]
            )
        return Raw(
            f'{{"FailedRecordCount":0,"Records":[{answers_json}],"EncryptionType":"NONE"}}'.encode()
        )
    answers = _put(call, name, entries)
    failed = 0
    out = []
    for answer in answers:
        if answer is None:
            failed += 1
            out.append(
                {
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": f"Rate exceeded for shard in stream {name} under account "
                    f"{call.api.account}.",
                }
            )
        else:
            out.append({"ShardId": answer[0], "SequenceNumber": answer[1]})
    return {"FailedRecordCount": failed, "Records": out, "EncryptionType": "NONE"}


def shard_of(call: Call, info: StreamInfo) -> int:
    shard_id = call.body.get("ShardId")
    index = shard_index(shard_id) if isinstance(shard_id, str) else None
    if index is None or index >= info.shard_count:
        raise not_found(
            f"Shard {shard_id} in stream {info.name} under account {call.api.account} "
            "does not exist"
        )
    return index


def get_shard_iterator(call: Call) -> dict[str, Any]:
    api = call.api
    info = describe(api, call.stream_name())
    index = shard_of(call, info)
    after = start_after(
        call,
        info,
        index,
        call.body.get("ShardIteratorType"),
        call.body.get("StartingSequenceNumber"),
        call.body.get("Timestamp"),
    )
    state = IteratorState(info.name, index, after, info.created, int(api.clock() * 1000))
    return {"ShardIterator": api.codec.seal(state)}


def start_after(
    call: Call, info: StreamInfo, index: int, kind: object, sequence: object, stamp: object
) -> int:
    """The counter a reader of shard ``index`` starts after, for an iterator type and argument."""
    api = call.api
    try:
        table = admin.shard_table_of(api.store, info.name, index)
        if kind == "TRIM_HORIZON":
            after = 0
        elif kind == "LATEST":
            after = api.store._last_sequence()
        elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            if not isinstance(sequence, str):
                raise invalid(f"StartingSequenceNumber is required for {kind}")
            try:
                counter = parse_sequence(sequence)
            except ValueError:
                raise invalid(
                    f"StartingSequenceNumber {sequence} used on shard "
                    f"{info.shards[index].shard_id} in stream {info.name} under account "
                    f"{api.account} is invalid."
                ) from None
            after = counter - 1 if kind == "AT_SEQUENCE_NUMBER" else counter
        elif kind == "AT_TIMESTAMP":
            if not isinstance(stamp, int | float) or isinstance(stamp, bool):
                raise invalid("Timestamp is required for AT_TIMESTAMP")
            after = _start_after(api.store, table, Position.at_timestamp(float(stamp)))
        else:
            raise validation(
                f"1 validation error detected: Value '{kind}' at 'shardIteratorType' failed to "
                "satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, "
                "AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]"
            )
    except StreamNotFound:
        raise not_found(f"Stream {info.name} under account {api.account} not found.") from None
    return max(after, 0)


def get_records(call: Call) -> Raw:
    api = call.api
    now = api.clock()
    state = api.codec.open(call.body.get("ShardIterator"), now)
    limit = int_arg(call.body, "Limit", MAX_GET_RECORDS, 1, MAX_GET_RECORDS)
    try:
        info = api.store.describe(state.stream, fresh=True)
        if info.created != state.created or state.shard >= info.shard_count:
            raise StreamNotFound(state.stream)
        table = admin.shard_table_of(api.store, info.name, state.shard)
        if api.limits is not None and not api.limits.admit_get(info.name, state.shard):
            raise throughput(
                f"Rate exceeded for shard {info.shards[state.shard].shard_id} in stream "
                f"{info.name} under account {api.account}."
            )
        page = admin.read_shard(api.store, table, state.after, limit, MAX_GET_BYTES)
    except StreamNotFound:
        raise not_found(f"Stream {state.stream} under account {api.account} not found.") from None
    except StoreError as exc:
        raise ApiError("InternalFailure", str(exc), 500) from exc
    after = page.last if page.last is not None else state.after
    behind = 0
    if page.last is not None and page.last < page.tip and page.last_arrival is not None:
        behind = max(0, int((now - page.last_arrival) * 1000))
    if api.limits is not None:
        api.limits.charge_get(info.name, state.shard, sum(len(r[3]) for r in page.rows()))
    issued = int(now * 1000)
    next_iterator = api.codec.seal(
        IteratorState(state.stream, state.shard, after, state.created, issued)
    )
    parts = records_json(page)
    return Raw(
        (
            f'{{"Records":[{",".join(parts)}],"NextShardIterator":"{next_iterator}",'
            f'"MillisBehindLatest":{behind}}}'
        ).encode()
    )


def records_json(page: admin.ShardPage) -> list[str]:
    """The page's records as Kinesis Record JSON objects, rendered straight from chunk slices.

    The hot path of every consumer (a 10,000-record page). Per slice, what all its records
    share is rendered once: the sequence numbers' leading "49000…" (a counter is a machine-size
    integer; SEQUENCE_BASE + counter is a 56-digit one, slow to turn into text each time) and,
    when every partition key of the chunk is plain printable ASCII, the keys' text, sliced
    rather than escaped one by one. A slice that shares neither goes the general way.
    """
    parts: list[str] = []
    for piece in page.slices:
        lo, hi = piece.lo, piece.hi
        first, last = piece.base + piece.idx[lo], piece.base + piece.idx[hi - 1]
        digits = len(str(first))
        if digits != len(str(last)) or _NEEDS_ESCAPE.search(piece.keys) is not None:
            parts += _records_json_general(piece)
            continue
        base, data, keys = piece.base, piece.data, piece.keys.decode("ascii")
        # "49" then the counter zero-padded to 54 digits: SEQUENCE_BASE + counter as text
        head = f'{{"SequenceNumber":"{str(SEQUENCE_BASE)[: SEQUENCE_DIGITS - digits]}'
        mid = f'","ApproximateArrivalTimestamp":{piece.arrival!r},"Data":"'
        parts += [
            f'{head}{base + i}{mid}{_b64(data[d0:d1])}","PartitionKey":"{keys[k0:k1]}"}}'
            for i, k0, k1, d0, d1 in _rows(piece)
        ]
    return parts


def _records_json_general(piece: admin.ChunkSlice) -> list[str]:
    arrival = repr(piece.arrival)
    base = SEQUENCE_BASE + piece.base
    keys, data = piece.keys, piece.data
    return [
        f'{{"SequenceNumber":"{base + i}","ApproximateArrivalTimestamp":{arrival},'
        f'"Data":"{_b64(data[d0:d1])}",'
        f'"PartitionKey":{json_string(keys[k0:k1].decode())}}}'
        for i, k0, k1, d0, d1 in _rows(piece)
    ]


def _rows(piece: admin.ChunkSlice) -> Iterator[tuple[int, int, int, int, int]]:
    """Each record of the slice: its counter offset, and where its key and data lie."""
    lo, hi = piece.lo, piece.hi
    return zip(
        piece.idx[lo:hi],
        piece.key_starts[lo:hi],
        piece.key_ends[lo:hi],
        piece.data_starts[lo:hi],
        piece.data_ends[lo:hi],
        strict=True,
    )
