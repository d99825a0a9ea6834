"""The store's Kinesis endpoint through boto3: enhanced fan-out (SubscribeToShard's event
stream) and the HTTP server's own behaviour (keep-alive, deadlines, the connection cap)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.endpoint.test_endpoint import assert_refused, kinesis, new_name, serve
from tests.peers.servers import Peer
from tests.support.endpoint import endpoint_thread

__all__ = ["kinesis", "serve"]  # the module's fixtures, shared with tests/endpoint/test_endpoint.py


class TestFanOut:
    def test_consumers_register_describe_list_deregister(self, kinesis: Any) -> None:
        """RegisterStreamConsumer, then Describe/List find it; Deregister removes it."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        stream_arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
            "StreamARN"
        ]
        consumer = kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName="app")
        consumer_arn = consumer["Consumer"]["ConsumerARN"]
        described = kinesis.describe_stream_consumer(ConsumerARN=consumer_arn)
        assert described["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE"
        listed = kinesis.list_stream_consumers(StreamARN=stream_arn)["Consumers"]
        assert [c["ConsumerName"] for c in listed] == ["app"]
        assert_refused(
            "ResourceInUseException",
            kinesis.register_stream_consumer,
            StreamARN=stream_arn,
            ConsumerName="app",
        )
        kinesis.deregister_stream_consumer(ConsumerARN=consumer_arn)
        assert kinesis.list_stream_consumers(StreamARN=stream_arn)["Consumers"] == []

    def test_subscribe_to_shard_pushes_records(self, kinesis: Any) -> None:
        """SubscribeToShard (boto3's event stream) delivers what was stored and what arrives
        during the subscription, in order, with a ContinuationSequenceNumber to resume from."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        stream_arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
            "StreamARN"
        ]
        consumer_arn = kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName="c")[
            "Consumer"
        ]["ConsumerARN"]
        kinesis.put_records(
            StreamName=name,
            Records=[{"Data": b"old-%d" % i, "PartitionKey": "k"} for i in range(3)],
        )
        response = kinesis.subscribe_to_shard(
            ConsumerARN=consumer_arn,
            ShardId="shardId-000000000000",
            StartingPosition={"Type": "TRIM_HORIZON"},
        )
        got: list[bytes] = []
        continuation = None
        stream = response["EventStream"]
        try:
            for event in stream:
                shard_event = event["SubscribeToShardEvent"]
                got += [r["Data"] for r in shard_event["Records"]]
                continuation = shard_event["ContinuationSequenceNumber"]
                if got == [b"old-0", b"old-1", b"old-2"]:
                    kinesis.put_record(StreamName=name, Data=b"new", PartitionKey="k")
                if len(got) >= 4:
                    break
        finally:
            stream.close()
        assert got == [b"old-0", b"old-1", b"old-2", b"new"]
        last = kinesis.put_record(StreamName=name, Data=b"after", PartitionKey="k")
        again = kinesis.subscribe_to_shard(
            ConsumerARN=consumer_arn,
            ShardId="shardId-000000000000",
            StartingPosition={"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": continuation},
        )["EventStream"]
        try:
            first = next(iter(again))["SubscribeToShardEvent"]["Records"]
        finally:
            again.close()
        assert [r["Data"] for r in first] == [b"after"]
        assert first[0]["SequenceNumber"] == last["SequenceNumber"]


class TestHttp:
    def test_keep_alive_header_timeout_and_connection_cap(self, tmp_path: Path) -> None:
        """Requests share a connection; a client stalling inside its headers gets a 408; past
        the connection cap a new connection gets a 503 and is closed."""
        import http.client
        import socket

        with endpoint_thread(tmp_path) as endpoint:
            conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
            headers = {
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "Kinesis_20131202.ListStreams",
            }
            for _ in range(2):
                conn.request("POST", "/", body=b"{}", headers=headers)
                answer = conn.getresponse()
                assert answer.status == 200 and json.loads(answer.read())["StreamNames"] == []
            conn.close()

            endpoint.http.header_timeout = 0.3
            with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as slow:
                slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
                started = time.monotonic()
                assert slow.recv(100).startswith(b"HTTP/1.1 408")
                assert time.monotonic() - started < 5

            endpoint.http.max_connections = 2
            idle = [socket.create_connection(("127.0.0.1", endpoint.port)) for _ in range(2)]
            try:
                deadline = time.monotonic() + 10  # the server has accepted both
                while len(endpoint.http._connections) < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as extra:
                    assert extra.recv(100).startswith(b"HTTP/1.1 503")
                assert endpoint.http.refused == 1  # counted (and logged)
            finally:
                for sock in idle:
                    sock.close()

    def test_unknown_operation_and_bad_json(self, kinesis: Any, serve: Peer) -> None:
        """An unknown X-Amz-Target and a body that is not JSON answer AWS's error shapes."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=10)
        for target, body, code in (
            ("Kinesis_20131202.Nope", b"{}", "UnknownOperationException"),
            ("Kinesis_20131202.ListStreams", b"{not json", "SerializationException"),
        ):
            conn.request(
                "POST",
                "/",
                body=body,
                headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
            )
            answer = conn.getresponse()
            assert answer.status == 400
            assert json.loads(answer.read())["__type"] == code
        conn.close()
