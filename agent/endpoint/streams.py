"""The stream-level operations: create, delete, list, describe, shards, retention, tags."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from agent.endpoint.errors import ApiError, invalid, not_found, validation
from agent.errors import StreamNotFound
from agent.store import admin
from agent.store.model import MAX_SHARDS, StreamInfo, format_sequence, valid_stream_name

if TYPE_CHECKING:
    from agent.endpoint.api import Api, Call

DEFAULT_SHARDS = 4  # an on-demand stream starts with 4 shards
MIN_RETENTION = 24
MAX_RETENTION = 8760
MAX_TAGS_PER_CALL = 10


def int_arg(body: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise invalid(f"{name} must be an integer from {lo} to {hi}, not {value!r}")
    return value


def describe(api: Api, name: str) -> StreamInfo:
    try:
        # fresh: a server beside us on the same store (serve and the agent's endpoint) may
        # have deleted or re-created it; the cost is two small reads per call
        return api.store.describe(name, fresh=True)
    except StreamNotFound:
        raise not_found(f"Stream {name} under account {api.account} not found.") from None


def arn(call: Call, name: str) -> str:
    return f"arn:aws:kinesis:{call.region}:{call.api.account}:stream/{name}"


def _summary(call: Call, info: StreamInfo) -> dict[str, Any]:
    return {
        "StreamName": info.name,
        "StreamARN": arn(call, info.name),
        "StreamStatus": "ACTIVE",
        "StreamModeDetails": {"StreamMode": "PROVISIONED"},
        "StreamCreationTimestamp": info.created,
    }


def _shard(info: StreamInfo, index: int) -> dict[str, Any]:
    shard = info.shards[index]
    return {
        "ShardId": shard.shard_id,
        "HashKeyRange": {
            "StartingHashKey": str(shard.starting_hash_key),
            "EndingHashKey": str(shard.ending_hash_key),
        },
        "SequenceNumberRange": {"StartingSequenceNumber": format_sequence(0)},
    }


def _start_after_shard(info: StreamInfo, shard_id: object) -> int:
    """Index of the first shard listed after ``ExclusiveStartShardId``."""
    if shard_id is None:
        return 0
    ids = [s.shard_id for s in info.shards]
    if not isinstance(shard_id, str):
        raise invalid("ExclusiveStartShardId must be a string")
    return next((i for i, s in enumerate(ids) if s > shard_id), len(ids))


def create_stream(call: Call) -> dict[str, Any]:
    name = call.body.get("StreamName")
    if not isinstance(name, str) or not valid_stream_name(name):
        raise validation(
            f"1 validation error detected: Value '{name}' at 'streamName' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        )
    count = call.body.get("ShardCount", DEFAULT_SHARDS)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise invalid(f"ShardCount must be a positive integer, not {count!r}")
    if count > MAX_SHARDS:
        raise ApiError(
            "LimitExceededException",
            f"This request would exceed the shard limit for the account: {MAX_SHARDS} shards "
            "per stream in the embedded store.",
        )
    try:
        admin.create_stream(call.api.store, name, count, call.api.retention_hours)
    except admin.StreamExists:
        raise ApiError(
            "ResourceInUseException",
            f"Stream {name} under account {call.api.account} already exists.",
        ) from None
    return {}


def delete_stream(call: Call) -> dict[str, Any]:
    name = call.stream_name()
    describe(call.api, name)
    try:
        admin.delete_stream(call.api.store, name)
    except StreamNotFound:
        raise not_found(f"Stream {name} under account {call.api.account} not found.") from None
    return {}


def list_streams(call: Call) -> dict[str, Any]:
    limit = int_arg(call.body, "Limit", 100, 1, 10000)
    start = call.body.get("ExclusiveStartStreamName")
    token = call.body.get("NextToken")
    if token is not None:
        start = _open_token(token)
    names = call.api.store.list_streams()
    if isinstance(start, str):
        names = [n for n in names if n > start]
    page, more = names[:limit], len(names) > limit
    out: dict[str, Any] = {
        "StreamNames": page,
        "HasMoreStreams": more,
        "StreamSummaries": [_summary(call, describe(call.api, n)) for n in page],
    }
    if more:
        out["NextToken"] = _token(page[-1])
    return out


def describe_stream(call: Call) -> dict[str, Any]:
    info = describe(call.api, call.stream_name())
    limit = int_arg(call.body, "Limit", 100, 1, 10000)
    first = _start_after_shard(info, call.body.get("ExclusiveStartShardId"))
    indexes = range(first, min(first + limit, info.shard_count))
    return {
        "StreamDescription": {
            **_summary(call, info),
            "Shards": [_shard(info, i) for i in indexes],
            "HasMoreShards": first + limit < info.shard_count,
            "RetentionPeriodHours": info.retention_hours,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
        }
    }


def describe_stream_summary(call: Call) -> dict[str, Any]:
    info = describe(call.api, call.stream_name())
    return {
        "StreamDescriptionSummary": {
            **_summary(call, info),
            "RetentionPeriodHours": info.retention_hours,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
            "OpenShardCount": info.shard_count,
            "ConsumerCount": 0,
        }
    }


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _open_token(token: object) -> str:
    try:
        if not isinstance(token, str):
            raise ValueError
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid(f"Invalid NextToken: {str(token)[:64]}") from None


def list_shards(call: Call) -> dict[str, Any]:
    token = call.body.get("NextToken")
    if token is not None:
        name, _sep, start = _open_token(token).partition("\n")
        # botocore's ListShards paginator repeats StreamName beside NextToken: accept it when
        # it names the token's stream
        if ("StreamName" in call.body or "StreamARN" in call.body) and call.stream_name() != name:
            raise invalid("NextToken and StreamName cannot be provided together.")
        first = int(start) if start.isascii() and start.isdigit() and len(start) < 9 else 0
        info = describe(call.api, name)
    else:
        info = describe(call.api, call.stream_name())
        first = _start_after_shard(info, call.body.get("ExclusiveStartShardId"))
    limit = int_arg(call.body, "MaxResults", 1000, 1, 10000)
    end = min(first + limit, info.shard_count)
    out: dict[str, Any] = {"Shards": [_shard(info, i) for i in range(first, end)]}
    if end < info.shard_count:
        out["NextToken"] = _token(f"{info.name}\n{end}")
    return out


def _retention(call: Call, increase: bool) -> dict[str, Any]:
    info = describe(call.api, call.stream_name())
    hours = call.body.get("RetentionPeriodHours")
    if not isinstance(hours, int) or isinstance(hours, bool):
        raise invalid("RetentionPeriodHours must be an integer")
    if not MIN_RETENTION <= hours <= MAX_RETENTION:
        raise invalid(
            f"Minimum allowed retention period is {MIN_RETENTION} hours and maximum is "
            f"{MAX_RETENTION} hours. Requested retention period ({hours} hours) is out of range."
        )
    if increase and hours < info.retention_hours:
        raise invalid(
            f"Requested retention period ({hours} hours) for stream {info.name} can not be "
            f"shorter than existing retention period ({info.retention_hours} hours). Use "
            "DecreaseRetentionPeriod API."
        )
    if not increase and hours > info.retention_hours:
        raise invalid(
            f"Requested retention period ({hours} hours) for stream {info.name} can not be "
            f"longer than existing retention period ({info.retention_hours} hours). Use "
            "IncreaseRetentionPeriod API."
        )
    admin.set_retention(call.api.store, info.name, hours)
    return {}


def increase_retention(call: Call) -> dict[str, Any]:
    return _retention(call, increase=True)


def decrease_retention(call: Call) -> dict[str, Any]:
    return _retention(call, increase=False)


def add_tags(call: Call) -> dict[str, Any]:
    info = describe(call.api, call.stream_name())
    tags = call.body.get("Tags")
    if (
        not isinstance(tags, dict)
        or not tags
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise invalid("Tags must be a map of 1 to 10 string keys and values")
    if len(tags) > MAX_TAGS_PER_CALL:
        raise invalid(f"A request may add at most {MAX_TAGS_PER_CALL} tags, not {len(tags)}")
    try:
        admin.add_tags(call.api.store, info.name, tags)
    except admin.TooManyTags as exc:
        raise ApiError("LimitExceededException", str(exc)) from None
    return {}


def list_tags(call: Call) -> dict[str, Any]:
    info = describe(call.api, call.stream_name())
    limit = int_arg(call.body, "Limit", 50, 1, 50)
    start = call.body.get("ExclusiveStartTagKey")
    tags = admin.list_tags(call.api.store, info.name)
    if isinstance(start, str):
        tags = [(k, v) for k, v in tags if k > start]
    return {
        "Tags": [{"Key": k, "Value": v} for k, v in tags[:limit]],
        "HasMoreTags": len(tags) > limit,
    }
