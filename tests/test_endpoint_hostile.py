"""The endpoint against hostile input and against a stream deleted under the agent's writer.

Each case here once ended in a 500 (that botocore retries), a traceback in the agent's log, or
records the agent believed delivered landing in another stream.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.endpoint.server import KinesisEndpoint
from agent.errors import StoreError
from agent.store.store import StreamStore
from tests.endpoint_helpers import endpoint_thread
from tests.peers.helpers import aws_client

SHARD = "shardId-000000000000"


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[KinesisEndpoint]:
    with endpoint_thread(tmp_path) as started:
        yield started


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        out = b""
        while chunk := conn.recv(65536):
            out += chunk
    return out


def all_records(kinesis: Any, stream: str) -> list[bytes]:
    it = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=SHARD, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return [r["Data"] for r in kinesis.get_records(ShardIterator=it)["Records"]]


def test_a_writer_of_a_deleted_stream_never_fills_the_next_stream_created(
    tmp_path: Path, endpoint: KinesisEndpoint
) -> None:
    """DeleteStream then CreateStream of another name must not hand the new stream the old id.

    The agent's writer keeps the deleted stream's layout cached; with the id reused, its next
    put went into the new stream's tables, reported as delivered to the deleted one.
    """
    kinesis = aws_client("kinesis", endpoint.url)
    writer = StreamStore.open(tmp_path)  # the agent's LocalSink connection
    try:
        writer.ensure_stream("logs", 1, 24)
        writer.put_columns("logs", ["k"], [b"before"])
        kinesis.delete_stream(StreamName="logs")
        kinesis.create_stream(StreamName="other", ShardCount=1)
        with pytest.raises(StoreError):
            writer.put_columns("logs", ["k"], [b"misdirected"])
    finally:
        writer.close()
    assert all_records(kinesis, "other") == []
