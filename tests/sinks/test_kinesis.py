"""KinesisSink against kinesalite over HTTP: delivery, shard placement, aggregation, client settings."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.stub import Stubber

from agent.awsclient import make_client
from agent.checkpoints import CheckpointDB
from agent.config import AgentConfig, FlowConfig
from agent.errors import FatalSinkError, RetryableSinkError
from agent.hashspace import hash_key
from agent.observability.metrics import FlowMetrics
from agent.pipeline.flow import Flow
from agent.records import Record
from agent.sinks.aws import translate_error
from agent.sinks.factory import open_sink
from agent.sinks.kinesis import KinesisSink
from tests.peers.faultproxy import Fault, FaultProxy
from tests.peers.helpers import deaggregate, new_stream, read_stream, shard_ranges
from tests.peers.servers import Peer, free_port
from tests.support.logs import line_records


def configs(endpoint: str, stream: str, **flow: Any) -> tuple[AgentConfig, FlowConfig]:
    agent_keys = {k: flow.pop(k) for k in list(flow) if k in AgentConfig.__dataclass_fields__}
    f = FlowConfig(file_pattern="/var/log/app/*.log", kinesis_stream=stream, **flow)
    return AgentConfig(flows=(f,), kinesis_endpoint=endpoint, **agent_keys), f


def sink_for(endpoint: str, stream: str, **flow: Any) -> KinesisSink:
    agent, f = configs(endpoint, stream, **flow)
    sink = KinesisSink.open(agent, f, metrics=FlowMetrics(f.flow_id, f.destination))
    return sink


def send(sink: KinesisSink, batch: Sequence[Record]) -> Any:
    return asyncio.run(sink.send(batch, ()))


def headers_seen(sink: KinesisSink) -> list[dict[str, str]]:
    seen: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        seen.append(
            {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        )

    sink.client.meta.events.register("before-send.*.*", capture)
    return seen


class TestDelivery:
    def test_every_record_arrives_in_order(self, kinesalite: Peer, stream: str) -> None:
        """Two batches of 500 arrive complete and in order; all are acknowledged."""
        sink = sink_for(kinesalite.endpoint, stream)
        batch = line_records(1000)
        for chunk in (batch[:500], batch[500:]):
            result = send(sink, chunk)
            assert result.error is None and not result.retry
            assert result.delivered == chunk
        got = read_stream(kinesalite.endpoint, stream)
        assert [d for _, d in next(iter(got.values()))] == [r.data for r in batch]
        assert sink.metrics is not None
        assert sink.metrics.records_sent == 1000
        assert sink.metrics.send_calls == 2
        assert sink.metrics.bytes_sent == sum(len(r.data) for r in batch)

    def test_too_big_a_batch_is_split_not_refused(self, kinesalite: Peer, stream: str) -> None:
        """A batch over 500 records or 5 MiB is sent in several calls, still in order."""
        sink = sink_for(kinesalite.endpoint, stream)
        batch = line_records(700) + [Record(b"b" * 900_000 + b"\n", None, 0, 1) for _ in range(7)]
        result = send(sink, batch)
        assert result.error is None and result.delivered == batch
        assert sink.metrics is not None and sink.metrics.send_calls == 3
        got = read_stream(kinesalite.endpoint, stream)
        assert [d for _, d in next(iter(got.values()))] == [r.data for r in batch]

    def test_open_sink_builds_it_from_the_config(self, kinesalite: Peer, stream: str) -> None:
        """The flow's destination key picks KinesisSink with the configured endpoint."""
        agent, f = configs(kinesalite.endpoint, stream)
        sink = open_sink(agent, f)
        assert isinstance(sink, KinesisSink)
        assert not sink.transactional
        assert send(sink, line_records(3)).delivered
        asyncio.run(sink.aclose())
        asyncio.run(sink.aclose())  # idempotent


class TestPartitionKeys:
    def test_deterministic_keys_land_in_their_shards(self, kinesalite: Peer) -> None:
        """DETERMINISTIC keys are the MD5 of each record's own data, and records sit in the shard
        whose hash range holds MD5(key)."""
        stream = new_stream(kinesalite.endpoint, shards=4)
        sink = sink_for(kinesalite.endpoint, stream, partition_key_option="DETERMINISTIC")
        batch = line_records(400)
        assert send(sink, batch).delivered == batch
        ranges = shard_ranges(kinesalite.endpoint, stream)
        got = read_stream(kinesalite.endpoint, stream)
        assert sum(len(v) for v in got.values()) == 400
        assert sum(1 for v in got.values() if v) == 4
        for shard, records in got.items():
            lo, hi = ranges[shard]
            for key, data in records:
                assert key == hashlib.md5(data).hexdigest()
                assert lo <= hash_key(key) <= hi

    def test_fallback_count_only_grows(self, kinesalite: Peer, tmp_path: Path) -> None:
        """partition_key_fallbacks has one writer: a flow restarted on a new sink (a reload
        keeps the flow's counters) adds to the count, never sets it back (5 went to 0)."""
        stream = new_stream(kinesalite.endpoint)
        logs = tmp_path / "logs"
        logs.mkdir()
        flow_cfg = FlowConfig(
            file_pattern=str(logs / "*.log"),
            kinesis_stream=stream,
            initial_position="START_OF_FILE",
            partition_key_option="FIELD",
            partition_key_field="user",
        )
        agent = AgentConfig(
            flows=(flow_cfg,),
            kinesis_endpoint=kinesalite.endpoint,
            checkpoint_file=str(tmp_path / "checkpoints.db"),
        )
        metrics = FlowMetrics(flow_cfg.flow_id, flow_cfg.destination)
        metrics.partition_key_fallbacks = 5  # counted before the reload
        seen = [metrics.partition_key_fallbacks]
        for run in range(2):
            with (logs / "app.log").open("ab") as f:
                f.write(b'{"user": "u1"}\nno json %d\n{"other": %d}\n' % (run, run))
            sink = KinesisSink.open(agent, flow_cfg, metrics=metrics)
            db = CheckpointDB(agent.checkpoint_file)
            try:
                asyncio.run(
                    Flow(agent, flow_cfg, sink, metrics, db).run(asyncio.Event(), once=True)
                )
            finally:
                asyncio.run(sink.aclose())
                db.close()
            seen.append(metrics.partition_key_fallbacks)
        assert seen == [5, 7, 9]

    def test_field_keys_and_fallback(self, kinesalite: Peer) -> None:
        """FIELD takes the key from the JSON record; records without it get a RANDOM key, counted."""
        stream = new_stream(kinesalite.endpoint, shards=4)
        sink = sink_for(
            kinesalite.endpoint, stream, partition_key_option="FIELD", partition_key_field="user"
        )
        batch = [
            Record(orjson.dumps({"user": f"u{i % 7}", "n": i}) + b"\n", None, i, i + 1)
            for i in range(70)
        ]
        batch += [Record(b"not json\n", None, 0, 1), Record(b'{"other": 1}\n', None, 0, 1)]
        assert len(send(sink, batch).delivered) == 72
        assert sink.metrics is not None and sink.metrics.partition_key_fallbacks == 2
        ranges = shard_ranges(kinesalite.endpoint, stream)
        got = read_stream(kinesalite.endpoint, stream)
        by_user: dict[str, set[str]] = {}
        for shard, records in got.items():
            for key, data in records:
                assert ranges[shard][0] <= hash_key(key) <= ranges[shard][1]
                if data.startswith(b'{"user"'):
                    assert key == json.loads(data)["user"]
                    by_user.setdefault(key, set()).add(shard)
        assert len(by_user) == 7 and all(len(s) == 1 for s in by_user.values())

    def test_a_resent_record_keeps_its_key(self, kinesalite: Peer, stream: str) -> None:
        """A RANDOM key is chosen once, so a retried record goes to the same shard as before."""
        sink = sink_for(kinesalite.endpoint, stream)
        batch = line_records(5)
        send(sink, batch)
        keys = [r.partition_key for r in batch]
        assert all(keys) and len(set(keys)) == 5
        send(sink, batch)
        assert [r.partition_key for r in batch] == keys


class TestAggregation:
    def test_kpl_records_deaggregate_to_the_originals(self, kinesalite: Peer, stream: str) -> None:
        """20,000 user records go in a handful of Kinesis records and come back exactly."""
        sink = sink_for(kinesalite.endpoint, stream, aggregate_records=True)
        assert sink.max_batch_records > 500
        batch = line_records(20_000, name="agg")
        result = send(sink, batch)
        assert result.error is None and result.delivered == batch
        assert sink.metrics is not None and sink.metrics.send_calls == 1
        stored = next(iter(read_stream(kinesalite.endpoint, stream).values()))
        assert len(stored) < 10
        users = deaggregate(stored)
        assert all(u["kinesis"]["aggregated"] for u in users)
        assert [base64.b64decode(u["kinesis"]["data"]) for u in users] == [r.data for r in batch]

    def test_deterministic_keys_survive_aggregation(self, kinesalite: Peer, stream: str) -> None:
        """Each user record keeps its own key inside the aggregate."""
        sink = sink_for(
            kinesalite.endpoint,
            stream,
            aggregate_records=True,
            partition_key_option="DETERMINISTIC",
        )
        batch = line_records(50)
        send(sink, batch)
        stored = next(iter(read_stream(kinesalite.endpoint, stream).values()))
        users = deaggregate(stored)
        assert [u["kinesis"]["partitionKey"] for u in users] == [
            hashlib.md5(r.data).hexdigest() for r in batch
        ]


class TestErrors:
    def test_missing_stream_is_fatal_and_keeps_everything(self, kinesalite: Peer) -> None:
        """ResourceNotFound fails the call as FatalSinkError; every record comes back to retry."""
        sink = sink_for(kinesalite.endpoint, "no-such-stream")
        batch = line_records(3)
        result = send(sink, batch)
        assert isinstance(result.error, FatalSinkError)
        assert "ResourceNotFoundException" in str(result.error)
        assert "no-such-stream" in str(result.error)
        assert result.retry == batch and not result.delivered
        assert sink.metrics is not None and sink.metrics.service_errors == 1

    def test_refused_connection_is_retryable(self) -> None:
        """Nothing listening: a network error, retried with backoff."""
        sink = sink_for(f"http://127.0.0.1:{free_port()}", "s")
        result = send(sink, line_records(2))
        assert isinstance(result.error, RetryableSinkError)
        assert len(result.retry) == 2

    def test_partial_failure_maps_entries_back(self) -> None:
        """Failed entries come back in order; KMS refusals make the result fatal (loud)."""
        sink = sink_for("http://127.0.0.1:9", "s")
        batch = line_records(4)
        answers = [
            {"SequenceNumber": "1", "ShardId": "shardId-0"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"},
            {"SequenceNumber": "2", "ShardId": "shardId-0"},
            {"ErrorCode": "KMSAccessDeniedException", "ErrorMessage": "no"},
        ]
        with Stubber(sink.client) as stub:
            stub.add_response("put_records", {"FailedRecordCount": 2, "Records": answers})
            result = send(sink, batch)
        assert result.delivered == [batch[0], batch[2]]
        assert result.retry == [batch[1], batch[3]]
        assert isinstance(result.error, FatalSinkError)
        assert sink.metrics is not None and sink.metrics.record_send_errors == 2

    def test_throttled_call_is_retryable(self) -> None:
        """A whole-call throttle (400 ProvisionedThroughputExceeded) is retryable."""
        sink = sink_for("http://127.0.0.1:9", "s")
        with Stubber(sink.client) as stub:
            stub.add_client_error(
                "put_records", "ProvisionedThroughputExceededException", http_status_code=400
            )
            result = send(sink, line_records(1))
        assert isinstance(result.error, RetryableSinkError)

    def test_botocore_does_not_retry_behind_our_back(self, kinesalite: Peer, stream: str) -> None:
        """One send is one HTTP request even when it fails with a 503."""
        with FaultProxy(kinesalite.port) as proxy:
            sink = sink_for(proxy.endpoint, stream)
            proxy.plan(Fault("status", status=503))
            result = send(sink, line_records(2))
            assert isinstance(result.error, RetryableSinkError)
            assert proxy.requests == 1


def client_error(code: str, status: int) -> ClientError:
    """What botocore raises for a PutRecords answered ``status`` with the error ``code``."""
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutRecords"
    )


class TestErrorTranslation:
    @pytest.mark.parametrize(
        ("exc", "retryable"),
        [
            (client_error("InternalFailure", 500), True),
            (client_error("Weird", 502), True),
            (client_error("LimitExceededException", 400), True),
            (client_error("AccessDeniedException", 400), False),
            (client_error("ResourceNotFoundException", 400), False),
            (client_error("413", 413), False),
            (EndpointConnectionError(endpoint_url="http://x"), True),
            (ReadTimeoutError(endpoint_url="http://x"), True),
            (ConnectionResetError(), True),
            (NoCredentialsError(), False),
        ],
    )
    def test_retryable_is_decided_by_the_error(self, exc: BaseException, retryable: bool) -> None:
        """Throttling, 5xx and the network heal with time; access and naming errors do not."""
        err = translate_error(exc, "PutRecords to 's'")
        assert err.retryable is retryable
        assert "PutRecords to 's'" in str(err)


class TestClientSettings:
    def test_secrets_never_in_repr_or_logs(
        self, kinesalite: Peer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Static keys are used to sign but never shown."""
        secret = "SECRETsecretSECRETsecret0123456789abcdef"
        sink = sink_for(
            kinesalite.endpoint,
            "missing",
            aws_access_key_id="AKIDSTATICKEY",
            aws_secret_access_key=secret,
        )
        seen = headers_seen(sink)
        with caplog.at_level(logging.DEBUG):
            result = send(sink, line_records(1))
        assert "AKIDSTATICKEY/" in seen[0]["Authorization"]
        for text in (repr(sink), str(result.error), caplog.text, repr(configs("x", "y")[0])):
            assert secret not in text

    def test_user_agent_prefix_and_override(self, kinesalite: Peer, stream: str) -> None:
        """userAgent is prepended to ours and the SDK's; userAgentOverride replaces it all."""
        sink = sink_for(kinesalite.endpoint, stream, user_agent="fleet-7")
        seen = headers_seen(sink)
        send(sink, line_records(1))
        assert seen[0]["User-Agent"].startswith("fleet-7 kinesis-agent/")
        assert "Botocore/" in seen[0]["User-Agent"]
        sink = sink_for(kinesalite.endpoint, stream, user_agent_override="exactly-this")
        seen = headers_seen(sink)
        send(sink, line_records(1))
        assert seen[0]["User-Agent"] == "exactly-this"

    def test_region_defaults_to_us_east_1(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No region anywhere: us-east-1, as the AWS agent; kinesis.region wins when set."""
        monkeypatch.delenv("AWS_REGION")
        monkeypatch.delenv("AWS_DEFAULT_REGION")
        agent, _ = configs("http://127.0.0.1:9", "s")
        assert make_client(agent, "kinesis").meta.region_name == "us-east-1"
        assert make_client(agent, "firehose").meta.region_name == "us-east-1"
        agent, _ = configs("http://127.0.0.1:9", "s", kinesis_region="eu-west-1")
        assert make_client(agent, "kinesis").meta.region_name == "eu-west-1"
        agent = AgentConfig(flows=(), kinesis_endpoint="https://kinesis.ap-south-1.amazonaws.com")
        assert make_client(agent, "kinesis").meta.region_name == "ap-south-1"

    def test_endpoint_without_scheme_means_https(self) -> None:
        """As the AWS agent: ``firehose.endpoint: firehose.eu-west-1.amazonaws.com`` works."""
        agent = AgentConfig(flows=(), firehose_endpoint="firehose.eu-west-1.amazonaws.com")
        client = make_client(agent, "firehose")
        assert client.meta.endpoint_url == "https://firehose.eu-west-1.amazonaws.com"
        assert client.meta.region_name == "eu-west-1"

    def test_proxy_environment_is_honoured(
        self, kinesalite: Peer, stream: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HTTP_PROXY routes the calls through the proxy (no config key needed, unlike AWS)."""
        with FaultProxy(kinesalite.port) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.endpoint)
            monkeypatch.setenv("NO_PROXY", "")
            monkeypatch.setenv("no_proxy", "")
            sink = sink_for(kinesalite.endpoint, stream)
            assert send(sink, line_records(3)).delivered
            assert proxy.requests == 1

    def test_assume_role_through_sts(self, kinesalite: Peer, moto: Peer, stream: str) -> None:
        """assumeRoleARN: calls are signed with the role's temporary keys from sts.endpoint."""
        sink = sink_for(
            kinesalite.endpoint,
            stream,
            assume_role_arn="arn:aws:iam::123456789012:role/shipper",
            assume_role_external_id="ext-1",
            sts_endpoint=moto.endpoint,
        )
        seen = headers_seen(sink)
        assert send(sink, line_records(2)).delivered
        credential = seen[0]["Authorization"].split("Credential=")[1].split("/")[0]
        assert credential != "testing" and credential.startswith("ASIA")
        assert "X-Amz-Security-Token" in seen[0]
