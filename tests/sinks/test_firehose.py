"""FirehoseSink against moto_server: records land in S3 objects intact; packing; per-entry failures."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

from botocore.stub import Stubber

from agent.config import AgentConfig, FlowConfig
from agent.errors import FatalSinkError
from agent.observability.metrics import FlowMetrics
from agent.records import Record
from agent.sinks.factory import open_sink
from agent.sinks.firehose import FIREHOSE_MAX_RECORD_BYTES, FirehoseSink
from tests.peers.helpers import aws_client
from tests.peers.servers import Peer


def delivery_stream(moto: Peer) -> tuple[str, str]:
    """A DirectPut delivery stream writing into a fresh bucket: (stream, bucket)."""
    name = f"fh-{uuid.uuid4().hex[:10]}"
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    aws_client("s3", moto.endpoint).create_bucket(Bucket=bucket)
    aws_client("firehose", moto.endpoint).create_delivery_stream(
        DeliveryStreamName=name,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "logs/",
        },
    )
    return name, bucket


def s3_bodies(moto: Peer, bucket: str) -> list[bytes]:
    s3 = aws_client("s3", moto.endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return [s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys]


def make_sink(moto: Peer, stream: str, **flow: Any) -> FirehoseSink:
    f = FlowConfig(file_pattern="/l/*.log", delivery_stream=stream, **flow)
    agent = AgentConfig(flows=(f,), firehose_endpoint=moto.endpoint)
    sink = open_sink(agent, f)
    assert isinstance(sink, FirehoseSink)
    sink.metrics = FlowMetrics(f.flow_id, f.destination)
    return sink


def lines(n: int) -> list[Record]:
    return [Record(b'{"n": %d, "msg": "hello"}\n' % i, None, i, i + 1) for i in range(n)]


def send(sink: FirehoseSink, batch: Sequence[Record]) -> Any:
    return asyncio.run(sink.send(batch, ()))


def entries_per_call(sink: FirehoseSink) -> list[int]:
    counts: list[int] = []

    def capture(request: Any, **_: Any) -> None:
        counts.append(len(json.loads(request.body)["Records"]))

    sink.client.meta.events.register("before-send.*.*", capture)
    return counts


class TestFirehose:
    def test_records_arrive_in_s3_unchanged(self, moto: Peer) -> None:
        """Each line, newline included, is in the bucket exactly once."""
        stream, bucket = delivery_stream(moto)
        sink = make_sink(moto, stream)
        batch = lines(1200)
        for i in range(0, 1200, 500):
            result = send(sink, batch[i : i + 500])
            assert result.error is None and result.delivered == batch[i : i + 500]
        body = b"".join(
            sorted(s3_bodies(moto, bucket), key=lambda b: json.loads(b.split(b"\n")[0])["n"])
        )
        assert body == b"".join(r.data for r in batch)
        assert sink.metrics is not None and sink.metrics.records_sent == 1200

    def test_aggregated_record_size_packs_whole_lines(self, moto: Peer) -> None:
        """aggregatedRecordSizeBytes: far fewer Firehose records, the same bytes in S3."""
        stream, bucket = delivery_stream(moto)
        sink = make_sink(moto, stream, aggregated_record_size_bytes=4096)
        counts = entries_per_call(sink)
        batch = lines(2000)
        assert sink.max_batch_records >= 2000
        result = send(sink, batch)
        assert result.delivered == batch
        assert counts == [len(b"".join(r.data for r in batch)) // 4096 + 1]
        assert b"".join(s3_bodies(moto, bucket)) == b"".join(r.data for r in batch)

    def test_multiline_flows_do_not_pack(self, moto: Peer) -> None:
        """As the AWS agent: packing is off when multiLineStartPattern is set."""
        stream, _ = delivery_stream(moto)
        sink = make_sink(
            moto, stream, aggregated_record_size_bytes=4096, multi_line_start_pattern="^2"
        )
        assert sink.aggregated_record_size == 0
        assert sink.max_record_bytes == FIREHOSE_MAX_RECORD_BYTES

    def test_missing_delivery_stream_is_fatal(self, moto: Peer) -> None:
        """ResourceNotFound: fatal error, every record kept for retry."""
        sink = make_sink(moto, "nope")
        batch = lines(2)
        result = send(sink, batch)
        assert isinstance(result.error, FatalSinkError)
        assert result.retry == batch

    def test_failed_entries_map_back_to_their_records(self, moto: Peer) -> None:
        """Per-entry ServiceUnavailable: those records, and only those, come back in order;
        with packing, a failed entry returns every record packed into it."""
        sink = make_sink(moto, "s", aggregated_record_size_bytes=60)
        batch = lines(6)  # 25-26 bytes each: two per packed entry
        answers = [
            {"RecordId": "a"},
            {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "busy"},
            {"RecordId": "c"},
        ]
        with Stubber(sink.client) as stub:
            stub.add_response(
                "put_record_batch", {"FailedPutCount": 1, "RequestResponses": answers}
            )
            result = send(sink, batch)
        assert result.delivered == batch[:2] + batch[4:]
        assert result.retry == batch[2:4]
        assert result.error is None
