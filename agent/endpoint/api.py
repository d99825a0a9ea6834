"""Dispatch of Kinesis_20131202.<Operation> requests to the operations, with AWS's error shapes.

A request is ``POST /`` with ``X-Amz-Target`` naming the operation and an AWS JSON 1.1 body;
the answer is JSON 1.1 too, errors as ``{"__type": code, "message": text}`` with the status AWS
uses (400 for the client's mistakes and throttling, 500 for ours). The operations run on a thread
(the store is synchronous SQLite); this module does no I/O of its own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from agent.endpoint import fanout, records, streams
from agent.endpoint.errors import ApiError, invalid
from agent.endpoint.iterators import IteratorCodec
from agent.endpoint.limits import ShardLimits
from agent.endpoint.sigv4 import KeyPair, region_of, verify
from agent.errors import StoreError
from agent.store.store import StreamStore

log = logging.getLogger(__name__)

TARGET_PREFIX = "Kinesis_20131202."
JSON_TYPES = ("application/x-amz-json-1.1", "application/x-amz-json-1.0", "application/json")
CONTENT_TYPE = "application/x-amz-json-1.1"
ACCOUNT = "000000000000"
# json.loads makes an object of every value: 16 MiB of "[]," is 5 million lists, 400 MiB, on each
# worker thread at once. No Kinesis request holds more than a few thousand values; the bound
# counts separators and brackets anywhere (even inside strings), so 500 records whose 256-character
# partition keys are all commas and brackets still pass.
MAX_JSON_SEPARATORS = 200_000
DEFAULT_REGION = "us-east-1"

Operation = Callable[["Call"], "dict[str, Any] | records.Raw | fanout.Subscription"]
OPERATIONS: dict[str, Operation] = {
    "CreateStream": streams.create_stream,
    "DeleteStream": streams.delete_stream,
    "ListStreams": streams.list_streams,
    "DescribeStream": streams.describe_stream,
    "DescribeStreamSummary": streams.describe_stream_summary,
    "ListShards": streams.list_shards,
    "IncreaseStreamRetentionPeriod": streams.increase_retention,
    "DecreaseStreamRetentionPeriod": streams.decrease_retention,
    "AddTagsToStream": streams.add_tags,
    "ListTagsForStream": streams.list_tags,
    "GetShardIterator": records.get_shard_iterator,
    "GetRecords": records.get_records,
    "PutRecord": records.put_record,
    "PutRecords": records.put_records,
    "RegisterStreamConsumer": fanout.register,
    "DescribeStreamConsumer": fanout.describe_consumer,
    "ListStreamConsumers": fanout.list_consumers,
    "DeregisterStreamConsumer": fanout.deregister,
    "SubscribeToShard": fanout.subscribe,
}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    error: str | None = None  # the __type of an error answer (for x-amzn-ErrorType and logs)
    subscription: fanout.Subscription | None = None  # SubscribeToShard: an event stream follows


class Api:
    """The operations over one store connection, the iterator key, and the optional limits."""

    def __init__(
        self,
        store: StreamStore,
        codec: IteratorCodec,
        *,
        keys: KeyPair | None = None,
        limits: ShardLimits | None = None,
        retention_hours: int = 24,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.codec = codec
        self.keys = keys
        self.limits = limits
        self.retention_hours = retention_hours
        self.clock = clock
        self.account = ACCOUNT
        self.subscription_seconds = fanout.SUBSCRIPTION_SECONDS

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """One request in, one answer out; never raises for anything a client sent."""
        try:
            return self._handle(method, target, headers, body)
        except ApiError as exc:
            return _error(exc)
        except StoreError as exc:
            log.warning("Kinesis endpoint: %s", exc)
            return _error(ApiError("InternalFailure", str(exc), 500))
        except Exception:
            log.exception("Kinesis endpoint: unexpected failure")
            return _error(ApiError("InternalFailure", "internal error; see the agent's log", 500))

    def _handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        if method != "POST":
            raise ApiError("UnknownOperationException", "the Kinesis API is POST / only", 404)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if "cbor" in content_type:
            raise ApiError(
                "SerializationException",
                "CBOR is not supported by this endpoint: configure the client for JSON "
                "(for the AWS SDK for Java, AWS_CBOR_DISABLE=true)",
                415,
            )
        if content_type and content_type not in JSON_TYPES:
            raise ApiError("SerializationException", f"unsupported Content-Type {content_type}")
        if self.keys is not None:
            verify(self.keys, method, target, headers, body, self.clock)
        name = headers.get("x-amz-target", "")
        operation = (
            OPERATIONS.get(name.removeprefix(TARGET_PREFIX))
            if name.startswith(TARGET_PREFIX)
            else None
        )
        if operation is None:
            raise ApiError("UnknownOperationException", f"unknown operation {name!r}")
        # (each separator is a byte: a shorter body cannot hold too many, and a PutRecords of
        # 500 small records, ~150 KB, skips three passes over its bytes)
        if len(body) > MAX_JSON_SEPARATORS and (
            body.count(b",") + body.count(b"[") + body.count(b"{") > MAX_JSON_SEPARATORS
        ):
            raise ApiError(
                "SerializationException",
                f"the body holds more than {MAX_JSON_SEPARATORS} JSON values; no request needs so many",
            )
        try:
            # orjson: half json's time on a PutRecords body; it refuses what json let through
            # only to fail later (lone surrogates, integers beyond 64 bits, NaN), and nesting
            # deeper than 1024 (a body of "[" only) as malformed rather than a RecursionError
            parsed = orjson.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError("SerializationException", "the body is not JSON") from None
        if not isinstance(parsed, dict):
            raise ApiError("SerializationException", "the body must be a JSON object")
        region = region_of(headers.get("authorization")) or DEFAULT_REGION
        result = operation(Call(self, parsed, region))
        if isinstance(result, records.Raw):
            return Answer(200, bytes(result))
        if isinstance(result, fanout.Subscription):
            return Answer(200, b"", subscription=result)
        return Answer(200, json.dumps(result, separators=(",", ":")).encode())


@dataclass(frozen=True, slots=True)
class Call:
    """One operation's arguments and where it runs."""

    api: Api
    body: dict[str, Any]
    region: str

    def stream_name(self) -> str:
        """StreamName, or the name in StreamARN (newer SDKs send either)."""
        name = self.body.get("StreamName")
        stream_arn = self.body.get("StreamARN")
        if isinstance(name, str):
            return name
        if isinstance(stream_arn, str) and ":stream/" in stream_arn:
            return stream_arn.rsplit(":stream/", 1)[1]
        raise invalid("StreamName or StreamARN is required")


def _error(exc: ApiError) -> Answer:
    body = json.dumps({"__type": exc.code, "message": exc.message}).encode()
    return Answer(exc.status, body, exc.code)
