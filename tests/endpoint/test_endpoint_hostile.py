"""The endpoint against hostile input and against a stream deleted under the agent's writer.

Each case here once ended in a 500 (that botocore retries), a traceback in the agent's log, or
records the agent believed delivered landing in another stream.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from agent.endpoint.server import KinesisEndpoint
from agent.errors import StoreError
from agent.store.store import StreamStore
from tests.peers.helpers import aws_client
from tests.peers.servers import free_port, start_store_endpoint
from tests.support.agent import start_agent, stop_agent, wait_for
from tests.support.config import logs_config
from tests.support.endpoint import endpoint_thread
from tests.support.logs import append, logs_dir, numbered

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


def all_records(kinesis: Any, stream: str, shard: str = SHARD) -> list[bytes]:
    it = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
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


def test_unicode_digits_in_content_length_get_400(endpoint: KinesisEndpoint) -> None:
    """'²' passes str.isdigit() but not int(): the connection died with a logged traceback."""
    answer = raw_exchange(
        endpoint.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    answer = raw_exchange(
        endpoint.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n" % (b"9" * 5000),
    )
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_deeply_nested_body_is_a_serialization_error(endpoint: KinesisEndpoint) -> None:
    """A JSON bomb of nesting is the client's malformed body (400), not our failure (500)."""
    body = b"[" * 100_000
    answer = raw_exchange(
        endpoint.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\n"
        b"Content-Type: application/x-amz-json-1.1\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"SerializationException" in answer


@pytest.mark.parametrize("hash_key", ["\u00b2", "9" * 5000, "\u0661"])
def test_a_malformed_explicit_hash_key_is_invalid_argument(
    endpoint: KinesisEndpoint, hash_key: str
) -> None:
    """Non-ASCII digits and 5,000-digit numbers: InvalidArgumentException, not InternalFailure."""
    kinesis = aws_client("kinesis", endpoint.url)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    with pytest.raises(kinesis.exceptions.InvalidArgumentException):
        kinesis.put_record(StreamName="s", Data=b"x", PartitionKey="k", ExplicitHashKey=hash_key)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        kinesis.put_records(
            StreamName="s",
            Records=[{"Data": b"x", "PartitionKey": "k", "ExplicitHashKey": hash_key}],
        )
    assert exc.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert all_records(kinesis, "s") == []


def test_a_shard_id_of_unicode_digits_is_not_found(endpoint: KinesisEndpoint) -> None:
    kinesis = aws_client("kinesis", endpoint.url)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.get_shard_iterator(
            StreamName="s", ShardId="shardId-\u00b2", ShardIteratorType="TRIM_HORIZON"
        )


def test_the_agent_ships_on_after_its_stream_is_deleted(tmp_path: Path) -> None:
    """DeleteStream of the stream the agent ships into: the next lines land in it again.

    The agent makes its stream at start; a consumer's DeleteStream used to leave every flow
    failing (StreamNotFound, not retryable) until a restart made the stream again.
    """
    port = free_port()
    config = logs_config(
        tmp_path,
        {"localStream": "web"},
        **{
            "localStore.directory": str(tmp_path / "store"),
            "localStore.listen": f"127.0.0.1:{port}",
        },
    )
    log = logs_dir(tmp_path) / "a.log"
    first = append(log, numbered("rid", 0, 3))
    agent_log = tmp_path / "agent.err"
    agent = start_agent(config, log=agent_log)
    try:
        kinesis = aws_client("kinesis", f"http://127.0.0.1:{port}")
        wait_for(lambda: records_of(kinesis, "web") == first, 20, log=agent_log)
        kinesis.delete_stream(StreamName="web")
        second = append(log, numbered("rid", 3, 3))
        wait_for(lambda: records_of(kinesis, "web") == second, 20, log=agent_log)
    finally:
        stop_agent(agent)


def records_of(kinesis: Any, stream: str) -> list[bytes] | None:
    """Every record of a stream (sorted), None while the stream or the endpoint is not there."""
    try:
        shards = kinesis.list_shards(StreamName=stream)["Shards"]
        return sorted(
            record for shard in shards for record in all_records(kinesis, stream, shard["ShardId"])
        )
    except (botocore.exceptions.ClientError, botocore.exceptions.EndpointConnectionError):
        return None


def test_two_servers_on_one_store_see_each_others_delete_and_create(tmp_path: Path) -> None:
    """serve beside the agent's endpoint: a stream deleted and re-created through one is seen
    as it is now through the other (its cached layout used to answer ACTIVE, InternalFailure
    for old iterators and ResourceNotFound for new ones until it restarted)."""
    with endpoint_thread(tmp_path) as one, endpoint_thread(tmp_path) as other:
        a, b = aws_client("kinesis", one.url), aws_client("kinesis", other.url)
        a.create_stream(StreamName="x", ShardCount=1)
        a.put_record(StreamName="x", Data=b"old", PartitionKey="k")
        old = a.get_shard_iterator(StreamName="x", ShardId=SHARD, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        b.delete_stream(StreamName="x")
        with pytest.raises(a.exceptions.ResourceNotFoundException):
            a.describe_stream_summary(StreamName="x")
        b.create_stream(StreamName="x", ShardCount=1)
        b.put_record(StreamName="x", Data=b"new", PartitionKey="k")
        with pytest.raises(a.exceptions.ResourceNotFoundException):
            a.get_records(ShardIterator=old)
        new = b.get_shard_iterator(StreamName="x", ShardId=SHARD, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        assert [r["Data"] for r in a.get_records(ShardIterator=new)["Records"]] == [b"new"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_http2_streams_cannot_multiply_the_body_cap(tmp_path: Path) -> None:
    """An HTTP/2 client holding many unfinished request bodies on one connection: the server
    buffers a bounded amount (it held up to 100 streams x 16 MiB per connection, where an
    HTTP/1.1 connection holds one body)."""
    h2_connection = pytest.importorskip("h2.connection")
    h2_config = pytest.importorskip("h2.config")
    peer = start_store_endpoint(tmp_path / "store", tmp_path)
    try:
        before = rss_mib(peer.process.pid)
        client = h2_connection.H2Connection(h2_config.H2Configuration(client_side=True))
        client.initiate_connection()
        headers = [
            (":method", "POST"),
            (":path", "/"),
            (":scheme", "http"),
            (":authority", "127.0.0.1"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "Kinesis_20131202.ListStreams"),
        ]
        ids = []
        for _ in range(60):
            sid = client.get_next_available_stream_id()
            client.send_headers(sid, headers)
            ids.append(sid)
        chunk = b" " * 16384
        per_stream = dict.fromkeys(ids, 0)  # 4 MiB each: under the 16 MiB cap of one body
        with socket.create_connection(("127.0.0.1", peer.port), timeout=10) as conn:
            conn.sendall(client.data_to_send())
            conn.settimeout(0.5)
            deadline = time.monotonic() + 30
            try:
                while per_stream and time.monotonic() < deadline:
                    for sid in list(per_stream):
                        if client.local_flow_control_window(sid) >= len(chunk):
                            client.send_data(sid, chunk)
                            per_stream[sid] += len(chunk)
                            if per_stream[sid] >= 4 * 1024 * 1024:
                                del per_stream[sid]
                    conn.sendall(client.data_to_send())
                    try:
                        data = conn.recv(1 << 20)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    client.receive_data(data)
                    conn.sendall(client.data_to_send())
            except (OSError, h2_exceptions().ProtocolError):
                pass  # refused: what matters is what the server holds
            grown = rss_mib(peer.process.pid) - before
        assert grown < 100, f"server grew {grown:.0f} MiB"
    finally:
        peer.stop()


def h2_exceptions() -> Any:
    import h2.exceptions

    return h2.exceptions


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_body_of_millions_of_empty_values_is_refused_before_parsing(tmp_path: Path) -> None:
    """16 MiB of ``[],`` parsed is half a GiB (a list object each), on each of the workers; it is
    a SerializationException, and the server's peak memory stays put."""
    peer = start_store_endpoint(tmp_path / "store", tmp_path)
    try:
        before = peak_rss_mib(peer.process.pid)
        count = 15 * 1024 * 1024 // 3
        body = b'{"StreamName":"x","Records":[' + b"[]," * count + b"[]]}"
        answer = raw_exchange(
            peer.port,
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\n"
            b"Content-Type: application/x-amz-json-1.1\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
        )
        grown = peak_rss_mib(peer.process.pid) - before
    finally:
        peer.stop()
    assert grown < 100, f"peak memory grew {grown:.0f} MiB"
    assert answer.startswith(b"HTTP/1.1 400 ") and b"SerializationException" in answer


def post_json(port: int, operation: str, body: object) -> tuple[int, dict[str, Any]]:
    """One AWS JSON 1.1 call of ``operation`` with ``body`` as given (no SDK to reshape it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            "/",
            json.dumps(body).encode(),
            {
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"Kinesis_20131202.{operation}",
            },
        )
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def test_put_records_entries_of_the_wrong_shape_get_400_and_store_nothing(
    endpoint: KinesisEndpoint,
) -> None:
    """PutRecords' fast path takes the entries as they parse: anything but an object holding a
    string key and base64 data must fall through to the checks that name it, never to a 500
    (that botocore retries) or a stored record."""
    kinesis = aws_client("kinesis", endpoint.url)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    good = {"PartitionKey": "k", "Data": "YQ=="}
    for bad in (
        1,
        "x",
        [],
        None,
        {"PartitionKey": 5, "Data": "YQ=="},
        {"PartitionKey": ["k"], "Data": "YQ=="},
        {"PartitionKey": "k", "Data": 5},
        {"PartitionKey": "k", "Data": ["YQ=="]},
        {"PartitionKey": "k", "Data": "YQ"},
        {"PartitionKey": "", "Data": "YQ=="},
        {"Data": "YQ=="},
        {**good, "ExplicitHashKey": "not a number"},  # a third field: the checked way
    ):
        status, answer = post_json(
            endpoint.port, "PutRecords", {"StreamName": "s", "Records": [good, bad]}
        )
        assert status == 400, (bad, answer)
        assert answer["__type"] in (
            "ValidationException",
            "SerializationException",
            "InvalidArgumentException",
        ), answer
    # an entry with the optional fields as well goes the checked way, and is stored
    status, answer = post_json(
        endpoint.port,
        "PutRecords",
        {"StreamName": "s", "Records": [good, {**good, "SequenceNumberForOrdering": "1"}]},
    )
    assert (status, answer["FailedRecordCount"]) == (200, 0), answer
    assert all_records(kinesis, "s") == [b"a", b"a"]
