"""Enhanced fan-out: registered consumers, and SubscribeToShard's event stream of records.

A subscription is an HTTP response that does not end: the AWS event-stream encoding (binary
messages with headers and CRC32s) of an ``initial-response`` event, then a
``SubscribeToShardEvent`` whenever records arrive (and at least every 5 s), for 5 minutes, as
Kinesis does; the consumer then subscribes again from the ContinuationSequenceNumber.
"""

from __future__ import annotations

import asyncio
import re
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from agent.endpoint.errors import ApiError, invalid, not_found
from agent.endpoint.records import MAX_GET_BYTES, records_json, shard_of, start_after
from agent.endpoint.streams import arn, describe
from agent.errors import StoreError, StreamNotFound
from agent.store import admin, consumers
from agent.store.model import StreamInfo, format_sequence, valid_stream_name

if TYPE_CHECKING:
    from agent.endpoint.api import Api, Call

SUBSCRIPTION_SECONDS = 300.0
HEARTBEAT_SECONDS = 5.0
POLL_SECONDS = 0.05
EVENT_RECORDS = 10_000
_CONSUMER_ARN = re.compile(
    r"arn:aws[a-z-]*:kinesis:[^:]*:\d+:stream/([a-zA-Z0-9_.-]+)/consumer/([a-zA-Z0-9_.-]+):\d+"
)
Runner = Callable[[Callable[[], Any]], Awaitable[Any]]  # runs a store call off the event loop


def _consumer_arn(call: Call, stream: str, name: str, created: float) -> str:
    return f"{arn(call, stream)}/consumer/{name}:{int(created)}"


def _description(call: Call, stream: str, name: str, created: float) -> dict[str, Any]:
    return {
        "ConsumerName": name,
        "ConsumerARN": _consumer_arn(call, stream, name, created),
        "ConsumerStatus": "ACTIVE",
        "ConsumerCreationTimestamp": created,
        "StreamARN": arn(call, stream),
    }


def _target(call: Call) -> tuple[str, str]:
    """(stream, consumer name) from ConsumerARN, or StreamARN + ConsumerName."""
    consumer_arn = call.body.get("ConsumerARN")
    if isinstance(consumer_arn, str):
        match = _CONSUMER_ARN.fullmatch(consumer_arn)
        if match is None:
            raise invalid(f"Invalid ConsumerARN {consumer_arn}")
        return match[1], match[2]
    name = call.body.get("ConsumerName")
    if not isinstance(name, str) or not valid_stream_name(name):
        raise invalid("ConsumerName (1 to 128 of [a-zA-Z0-9_.-]) or ConsumerARN is required")
    return call.stream_name(), name


def _created(call: Call, stream: str, name: str) -> float:
    describe(call.api, stream)
    for known, created in consumers.consumers(call.api.store, stream):
        if known == name:
            return created
    raise not_found(
        f"Consumer {name} of stream {stream} under account {call.api.account} not found."
    )


def register(call: Call) -> dict[str, Any]:
    stream, name = _target(call)
    describe(call.api, stream)
    try:
        created = consumers.register(call.api.store, stream, name, call.api.clock())
    except consumers.ConsumerExists:
        raise ApiError("ResourceInUseException", f"Consumer {name} exists.") from None
    except consumers.TooManyConsumers as exc:
        raise ApiError("LimitExceededException", str(exc)) from None
    return {"Consumer": _description(call, stream, name, created)}


def describe_consumer(call: Call) -> dict[str, Any]:
    stream, name = _target(call)
    return {"ConsumerDescription": _description(call, stream, name, _created(call, stream, name))}


def list_consumers(call: Call) -> dict[str, Any]:
    stream = call.stream_name()
    describe(call.api, stream)
    found = consumers.consumers(call.api.store, stream)
    return {
        "Consumers": [
            {k: v for k, v in _description(call, stream, n, c).items() if k != "StreamARN"}
            for n, c in found
        ]
    }


def deregister(call: Call) -> dict[str, Any]:
    stream, name = _target(call)
    describe(call.api, stream)
    try:
        consumers.deregister(call.api.store, stream, name)
    except consumers.ConsumerNotFound:
        raise not_found(f"Consumer {name} of stream {stream} not found.") from None
    return {}


@dataclass(frozen=True, slots=True)
class Subscription:
    """What SubscribeToShard answers with: where the event stream starts."""

    stream: str
    shard: int
    after: int
    created: float
    seconds: float


def subscribe(call: Call) -> Subscription:
    stream, name = _target(call)
    _created(call, stream, name)
    info = describe(call.api, stream)
    index = shard_of(call, info)
    start = call.body.get("StartingPosition")
    if not isinstance(start, dict):
        raise invalid("StartingPosition is required")
    after = start_after(
        call, info, index, start.get("Type"), start.get("SequenceNumber"), start.get("Timestamp")
    )
    return Subscription(info.name, index, after, info.created, call.api.subscription_seconds)


def message(event_type: str, payload: bytes) -> bytes:
    """One event-stream message: prelude, CRC, headers, payload, CRC (application/json)."""
    headers = b"".join(
        _header(name, value)
        for name, value in (
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        )
    )
    prelude = struct.pack(">II", 16 + len(headers) + len(payload), len(headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude))
    body = head + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _header(name: str, value: str) -> bytes:
    key, text = name.encode(), value.encode()
    return bytes([len(key)]) + key + b"\x07" + struct.pack(">H", len(text)) + text


async def events(api: Api, run: Runner, sub: Subscription) -> AsyncIterator[bytes]:
    """The event stream of ``sub``; ``run`` runs a store call off the event loop."""
    loop = asyncio.get_running_loop()
    yield message("initial-response", b"{}")
    after = sub.after
    end = loop.time() + sub.seconds
    last_event = float("-inf")
    while loop.time() < end:
        try:
            info: StreamInfo = await run(partial(api.store.describe, sub.stream, fresh=True))
            if info.created != sub.created:
                return
            table = admin.shard_table_of(api.store, sub.stream, sub.shard)
            page: admin.ShardPage = await run(
                partial(admin.read_shard, api.store, table, after, EVENT_RECORDS, MAX_GET_BYTES)
            )
        except (StreamNotFound, StoreError):
            return  # the stream went away: the subscription ends, the consumer finds out why
        now = loop.time()
        if page.count or now - last_event >= HEARTBEAT_SECONDS:
            after = page.last if page.last is not None else after
            behind = 0
            if page.last is not None and page.last < page.tip and page.last_arrival is not None:
                behind = max(0, int((api.clock() - page.last_arrival) * 1000))
            payload = (
                f'{{"Records":[{",".join(records_json(page))}],'
                f'"ContinuationSequenceNumber":"{format_sequence(after)}",'
                f'"MillisBehindLatest":{behind}}}'
            )
            last_event = now
            yield message("SubscribeToShardEvent", payload.encode())
        if not page.count:
            await asyncio.sleep(POLL_SECONDS)
