"""CloudWatch metrics: statistic sets per (metric, dimensions), batching, failures, and moto_server."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import http.server
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from agent.config import AgentConfig, FlowConfig, load_config, parse_config
from agent.errors import MetricsNotSent
from agent.observability.cloudwatch import (
    MAX_DATUMS_PER_REQUEST,
    CloudWatchEmitter,
    boto_put_metric_data,
    region_for,
    should_emit,
)
from agent.observability.metrics import AgentMetrics, FlowMetrics
from tests.peers.servers import TEST_ENV, Peer
from tests.support.agent import run_once
from tests.support.config import obs_config
from tests.support.logs import write_log


def _config(*flows: FlowConfig, **kw: Any) -> AgentConfig:
    return AgentConfig(flows=flows, **kw)


LOCAL = FlowConfig(file_pattern="/l/*.log", local_stream="s")
KINESIS = FlowConfig(file_pattern="/k/*.log", kinesis_stream="k")


class Recorder:
    """A PutMetricData stand-in: keeps every request; can be told to fail (nothing stored) or
    to lose the answer (stored, but the caller gets an error, as after a read timeout)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, list[dict[str, Any]]]] = []
        self.fail = 0
        self.lose = 0

    def __call__(self, namespace: str, datums: list[dict[str, Any]]) -> None:
        if self.fail:
            self.fail -= 1
            raise MetricsNotSent("endpoint down")
        self.requests.append((namespace, datums))
        if self.lose:
            self.lose -= 1
            raise TimeoutError("Read timeout on endpoint URL")

    def datums(self) -> list[dict[str, Any]]:
        return [d for _, batch in self.requests for d in batch]


def _metrics(*destinations: str) -> AgentMetrics:
    metrics = AgentMetrics()
    for d in destinations:
        metrics.flow(f"flow-{d}", d)
    return metrics


def _kinesis_emitter(put: Recorder) -> tuple[FlowMetrics, CloudWatchEmitter]:
    """An emitter over the one Kinesis flow ``k`` that sends through ``put``, and that flow's
    metrics for the test to feed."""
    metrics = _metrics("KinesisStream:k")
    emitter = CloudWatchEmitter(_config(KINESIS), metrics, put=put)
    return metrics.flows["flow-KinesisStream:k"], emitter


def _first_flush_fails(
    put: Recorder, first: tuple[int, int], second: tuple[int, int]
) -> CloudWatchEmitter:
    """Two periods of sends, (records, bytes) each: the first period's flush fails as ``put`` is
    set to, the second's goes through."""
    k, emitter = _kinesis_emitter(put)
    for (records, nbytes), delivered in ((first, False), (second, True)):
        k.send_call(
            attempted=records, sent=records, sent_bytes=nbytes, failed=0, service_error=False
        )
        assert asyncio.run(emitter.flush()) is delivered
    return emitter


class TestWhenToEmit:
    def test_local_only_without_endpoint_stays_quiet(self) -> None:
        """The embedded-store install has no AWS account: no calls unless an endpoint is set."""
        assert not should_emit(_config(LOCAL))
        assert should_emit(_config(LOCAL, cloudwatch_endpoint="http://127.0.0.1:1"))

    def test_aws_destinations_emit_by_default(self) -> None:
        """As the AWS agent: emitMetrics defaults to true for Kinesis/Firehose flows."""
        assert should_emit(_config(LOCAL, KINESIS))
        assert not should_emit(_config(KINESIS, cloudwatch_emit_metrics=False))

    def test_region(self) -> None:
        """The endpoint's region, else kinesis.region, else the environment."""
        assert (
            region_for(_config(cloudwatch_endpoint="https://monitoring.eu-west-1.amazonaws.com"))
            == "eu-west-1"
        )
        assert region_for(_config(kinesis_region="ap-south-1")) == "ap-south-1"


class TestEmitter:
    def test_statistic_sets_per_call(self) -> None:
        """Per-call values aggregate into one StatisticSet per metric and destination."""
        metrics = _metrics("KinesisStream:k", "LocalStream:s")
        k = metrics.flows["flow-KinesisStream:k"]
        k.send_call(attempted=500, sent=500, sent_bytes=50_000, failed=0, service_error=False)
        k.send_call(attempted=200, sent=150, sent_bytes=15_000, failed=50, service_error=False)
        put = Recorder()
        emitter = CloudWatchEmitter(_config(KINESIS), metrics, put=put)
        assert asyncio.run(emitter.flush())
        [(namespace, datums)] = put.requests
        assert namespace == "AWSKinesisAgent"
        by_name = {d["MetricName"]: d for d in datums}
        assert set(by_name) == {
            "RecordSendAttempts",
            "RecordsSent",
            "RecordSendErrors",
            "BytesSent",
            "ServiceErrors",
            "ConsecutiveProcessingErrors",
        }
        sent = by_name["RecordsSent"]
        assert sent["Dimensions"] == [{"Name": "Destination", "Value": "KinesisStream:k"}]
        assert sent["StatisticValues"] == {
            "SampleCount": 2.0,
            "Sum": 650.0,
            "Minimum": 150.0,
            "Maximum": 500.0,
        }
        assert sent["Unit"] == "Count"
        assert by_name["BytesSent"]["Unit"] == "Bytes"
        assert by_name["RecordSendErrors"]["StatisticValues"]["Sum"] == 50.0
        assert by_name["ConsecutiveProcessingErrors"]["Dimensions"] == sent["Dimensions"]
        # the idle local flow sends nothing; a second flush has only the Kinesis flow's gauge
        assert asyncio.run(emitter.flush()) and len(put.requests) == 2
        assert [d["MetricName"] for d in put.requests[1][1]] == ["ConsecutiveProcessingErrors"]

    def test_stuck_flow_gauge(self) -> None:
        """ConsecutiveProcessingErrors: one sample per period of the failed attempts in a row."""
        put = Recorder()
        k, emitter = _kinesis_emitter(put)
        k.consecutive_errors = 7
        asyncio.run(emitter.flush())
        k.consecutive_errors = 0
        asyncio.run(emitter.flush())
        gauges = [
            d["StatisticValues"]
            for _, batch in put.requests
            for d in batch
            if d["MetricName"] == "ConsecutiveProcessingErrors"
        ]
        assert gauges == [
            {"SampleCount": 1.0, "Sum": 7.0, "Minimum": 7.0, "Maximum": 7.0},
            {"SampleCount": 1.0, "Sum": 0.0, "Minimum": 0.0, "Maximum": 0.0},
        ]

    def test_tag_instance_uses_both_dimensions_only(self) -> None:
        """With tagInstance the datums carry Destination and Instance, and nothing else."""
        metrics = _metrics("DeliveryStream:d")
        metrics.flows["flow-DeliveryStream:d"].send_call(
            attempted=1, sent=1, sent_bytes=9, failed=0, service_error=False
        )
        put = Recorder()
        emitter = CloudWatchEmitter(
            _config(KINESIS, cloudwatch_tag_instance=True), metrics, put=put, instance="i-0abc"
        )
        asyncio.run(emitter.flush())
        for d in put.datums():
            assert d["Dimensions"] == [
                {"Name": "Destination", "Value": "DeliveryStream:d"},
                {"Name": "Instance", "Value": "i-0abc"},
            ]

    def test_ambiguous_failure_is_dropped_never_resent(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A put that may have landed is not sent again: sums never exceed what was shipped."""
        put = Recorder()
        put.lose = 1
        emitter = _first_flush_fails(put, (3000, 300), (2000, 200))
        sums = [
            d["StatisticValues"]["Sum"] for d in put.datums() if d["MetricName"] == "RecordsSent"
        ]
        assert sums == [3000.0, 2000.0]  # the first landed once; it was not merged into the next
        assert emitter.datums_dropped == 6 and emitter.failures == 1
        assert "dropped 6 datum(s) rather than risk counting them twice" in caplog.text

    def test_failure_keeps_datums_for_the_next_period(self) -> None:
        """A send that stored nothing loses nothing: the sets merge with the next period's."""
        put = Recorder()
        put.fail = 1
        emitter = _first_flush_fails(put, (10, 100), (5, 50))
        sent = {d["MetricName"]: d["StatisticValues"] for d in put.datums()}["RecordsSent"]
        assert sent == {"SampleCount": 2.0, "Sum": 15.0, "Minimum": 5.0, "Maximum": 10.0}
        assert emitter.failures == 1

    def test_requests_stay_within_the_datum_limit(self) -> None:
        """Many destinations split into requests of at most 1,000 datums."""
        destinations = [f"KinesisStream:s{i}" for i in range(450)]  # 2,700 datums
        metrics = _metrics(*destinations)
        for m in metrics.flows.values():
            m.send_call(attempted=1, sent=1, sent_bytes=1, failed=0, service_error=False)
        put = Recorder()
        asyncio.run(CloudWatchEmitter(_config(KINESIS), metrics, put=put).flush())
        sizes = [len(batch) for _, batch in put.requests]
        assert sizes == [MAX_DATUMS_PER_REQUEST, MAX_DATUMS_PER_REQUEST, 700]

    def test_queue_bound_drops_new_keys_only(self) -> None:
        """metricsQueueSize caps distinct (metric, dimensions) keys held across failures."""
        metrics = _metrics("KinesisStream:a", "KinesisStream:b")
        for m in metrics.flows.values():
            m.send_call(attempted=1, sent=1, sent_bytes=1, failed=0, service_error=False)
        put = Recorder()
        emitter = CloudWatchEmitter(
            _config(KINESIS, cloudwatch_metrics_queue_size=5), metrics, put=put
        )
        asyncio.run(emitter.flush())
        assert len(put.datums()) == 5


class TestBufferTime:
    @pytest.mark.parametrize(
        ("given", "used"),
        [(25, 1000), (0, 1000), (-1, 1000), ("25", 1000), (10**12, 3_600_000), (30_000, 30_000)],
    )
    def test_every_aws_value_is_accepted_and_clamped(
        self, given: object, used: int, caplog: pytest.LogCaptureFixture
    ) -> None:
        """AWS reads metricsBufferTimeMillis unchecked (its sample sets 25): clamp and say so."""
        cfg = parse_config(
            {
                "cloudwatch.metricsBufferTimeMillis": given,
                "flows": [{"filePattern": "/k/*.log", "kinesisStream": "k"}],
            }
        )
        assert CloudWatchEmitter(cfg, AgentMetrics()).period == used / 1000
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        if used == given:
            assert warned == []
        else:
            [line] = warned
            assert "cloudwatch.metricsBufferTimeMillis" in line and f"using {used}" in line
            assert str(given) in line

    def test_cli_runs_with_the_aws_sample_value(self, tmp_path: Path) -> None:
        """The real command accepts 25 (it exited 78 before) and warns once, naming the key."""
        write_log(tmp_path / "logs" / "app.log", 3, 20)
        cfg = obs_config(tmp_path, **{"cloudwatch.metricsBufferTimeMillis": 25})
        proc = run_once(cfg, timeout=60)
        assert proc.stderr.count("cloudwatch.metricsBufferTimeMillis: 25 is outside") == 1


# --- against moto_server ---------------------------------------------------------------------------


@pytest.mark.slow
def test_run_once_publishes_what_it_shipped(tmp_path: Path, moto: Peer) -> None:
    """``run --once`` with emitMetrics: RecordsSent/BytesSent sums in moto equal the work done."""
    moto_endpoint = moto.endpoint
    lines, width = 321, 50
    nbytes = write_log(tmp_path / "logs" / "app.log", lines, width)
    cfg = obs_config(
        tmp_path,
        **{
            "cloudwatch.emitMetrics": True,
            "cloudwatch.endpoint": moto_endpoint,
            "cloudwatch.metricsBufferTimeMillis": 3_600_000,  # only the final flush sends
        },
    )
    config = load_config(str(cfg))
    [flow] = config.flows
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    run_once(cfg, timeout=120)
    client = boto3.client(
        "cloudwatch",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    )

    def total(name: str) -> float:
        stats = client.get_metric_statistics(
            Namespace="AWSKinesisAgent",
            MetricName=name,
            Dimensions=[{"Name": "Destination", "Value": flow.destination}],
            StartTime=started,
            EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
            Period=60,
            Statistics=["Sum", "SampleCount"],
        )
        return sum(p["Sum"] for p in stats["Datapoints"])

    assert flow.destination == "LocalStream:obs"
    assert total("RecordsSent") == lines
    assert total("BytesSent") == nbytes
    assert total("RecordSendAttempts") == lines
    assert total("RecordSendErrors") == 0
    listed = client.list_metrics(Namespace="AWSKinesisAgent")["Metrics"]
    assert {m["MetricName"] for m in listed} >= {"RecordsSent", "BytesSent", "ServiceErrors"}
    assert all(
        m["Dimensions"] == [{"Name": "Destination", "Value": "LocalStream:obs"}] for m in listed
    )
    json.dumps(listed)  # plain values, as get_metric_statistics returned them


class AnswerLosingProxy:
    """Forwards to moto; for the next ``lose`` PutMetricData calls it forwards (moto stores the
    datums), then holds the answer back until the client has timed out, and hangs up."""

    def __init__(self, upstream: str, stall: float) -> None:
        target = urlsplit(upstream)
        self.lose = 0
        self.forwarded = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body, headers)
                answer = conn.getresponse()
                data = answer.read()
                conn.close()
                proxy.forwarded += 1
                if "PutMetricData" in self.headers.get("X-Amz-Target", "") and proxy.lose:
                    proxy.lose -= 1
                    time.sleep(stall)  # stored upstream; the client gives up waiting
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


@pytest.mark.slow
def test_put_that_timed_out_but_landed_is_not_counted_twice(moto: Peer) -> None:
    """Against moto: a PutMetricData stored, whose answer never came (read timeout), is not
    merged into the next period and sent again; CloudWatch's sums equal what was shipped."""
    destination = f"KinesisStream:cw-{uuid.uuid4().hex[:8]}"
    proxy = AnswerLosingProxy(moto.endpoint, stall=1.5)
    try:
        config = _config(KINESIS, cloudwatch_endpoint=proxy.endpoint)
        metrics = _metrics(destination)
        flow = metrics.flows[f"flow-{destination}"]
        emitter = CloudWatchEmitter(
            config, metrics, put=boto_put_metric_data(config, read_timeout=0.5)
        )
        started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        proxy.lose = 1
        flow.send_call(attempted=3000, sent=3000, sent_bytes=3000, failed=0, service_error=False)
        assert not asyncio.run(emitter.flush())
        assert proxy.forwarded == 1  # it reached moto
        flow.send_call(attempted=2000, sent=2000, sent_bytes=2000, failed=0, service_error=False)
        assert asyncio.run(emitter.flush())
    finally:
        proxy.close()
    client = boto3.client("cloudwatch", endpoint_url=moto.endpoint, region_name="us-east-1")
    stats = client.get_metric_statistics(
        Namespace="AWSKinesisAgent",
        MetricName="RecordsSent",
        Dimensions=[{"Name": "Destination", "Value": destination}],
        StartTime=started,
        EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 5000  # not 8,000
    assert emitter.datums_dropped == 6  # and the drop is counted


@pytest.mark.slow
def test_unreachable_cloudwatch_does_not_affect_shipping(tmp_path: Path) -> None:
    """An endpoint nobody listens on: everything ships, exit 0, one warning about the metrics."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    write_log(tmp_path / "logs" / "app.log", 50, 20)
    cfg = obs_config(tmp_path, **{"cloudwatch.endpoint": dead})
    proc = run_once(cfg, timeout=60)
    assert "50 records sent successfully" in proc.stderr
    assert proc.stderr.count("cannot publish CloudWatch metrics") == 1
