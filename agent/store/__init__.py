"""The embedded Kinesis-like stream store: streams of shards on SQLite, read with Kinesis iterators."""

from __future__ import annotations

from agent.store.model import (
    LATEST,
    TRIM_HORIZON,
    IteratorType,
    Position,
    ShardInfo,
    ShardStats,
    StoredRecord,
    StreamInfo,
)
from agent.store.reader import StreamCursor
from agent.store.store import StreamStore

__all__ = [
    "LATEST",
    "TRIM_HORIZON",
    "IteratorType",
    "Position",
    "ShardInfo",
    "ShardStats",
    "StoredRecord",
    "StreamCursor",
    "StreamInfo",
    "StreamStore",
]
