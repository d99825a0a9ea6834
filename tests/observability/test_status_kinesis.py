"""A Kinesis flow seen from outside: capacity advice in status, CloudWatch sums, check --test-destination."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest

from tests.peers.helpers import aws_client
from tests.peers.servers import Peer
from tests.support.agent import run_agent, running_agent, snapshot_when, wait_for
from tests.support.config import kinesis_config as one_kinesis_flow
from tests.support.config import state_socket
from tests.support.logs import write_log

LINES = 2000
WIDTH = 100


def kinesis_config(tmp: Path, stream: str, kinesalite: Peer, moto: Peer) -> Path:
    return one_kinesis_flow(
        tmp,
        kinesalite.endpoint,
        stream,
        checkpoints=tmp / "state" / "checkpoints.db",
        **{
            "cloudwatch.emitMetrics": True,
            "cloudwatch.endpoint": moto.endpoint,
            "cloudwatch.metricsBufferTimeMillis": 1000,
        },
    )


@pytest.mark.slow
def test_kinesis_flow_status_capacity_and_cloudwatch(
    tmp_path: Path, stream: str, kinesalite: Peer, moto: Peer
) -> None:
    """Shipping to kinesalite: status advises shards from the observed rate; CloudWatch has the sums."""
    nbytes = write_log(tmp_path / "logs" / "app.log", LINES, WIDTH)
    cfg = kinesis_config(tmp_path, stream, kinesalite, moto)
    sock = state_socket(tmp_path)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with running_agent(cfg, tmp_path / "agent.log") as proc:
        snap = wait_for(
            snapshot_when(
                sock,
                lambda s: (
                    s["records_sent"] == LINES and s["flows"][0]["capacity"]["put_units_per_s"] > 0
                ),
                proc,
            ),
            what="the file to be shipped and a rate observed",
        )
        status = run_agent("status", "-c", str(cfg)).stdout
        checked = run_agent("check", "-c", str(cfg)).stdout
    [flow] = snap["flows"]
    assert flow["destination"] == f"KinesisStream:{stream}"
    assert flow["bytes_sent"] == nbytes
    cap = flow["capacity"]
    # the busiest second of the backfill, sized by the records limit (100-byte records)
    assert cap["records_per_s"] > 0
    assert cap["bytes_per_s"] == pytest.approx(cap["records_per_s"] * WIDTH, rel=0.01)
    assert cap["shards"] == max(1, math.ceil(cap["records_per_s"] / 1000))
    assert cap["put_units_per_s"] == math.ceil(cap["records_per_s"] - 1e-9)
    assert cap["aggregated_put_units_per_s"] < cap["put_units_per_s"]
    advice = f"KinesisStream:{stream}: needs {cap['shards']} shard(s)"
    assert advice in status
    assert advice in checked

    cloudwatch = aws_client("cloudwatch", moto.endpoint)

    def total(name: str) -> float:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWSKinesisAgent",
            MetricName=name,
            Dimensions=[{"Name": "Destination", "Value": f"KinesisStream:{stream}"}],
            StartTime=started,
            EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        return sum(p["Sum"] for p in points)

    assert total("RecordsSent") == LINES
    assert total("BytesSent") == nbytes
    assert total("RecordSendErrors") == 0
    assert total("ServiceErrors") == 0


def test_test_destination_against_kinesalite(
    tmp_path: Path, stream: str, kinesalite: Peer, moto: Peer
) -> None:
    """An existing stream describes as ACTIVE; a missing one fails the check with exit 1."""
    cfg = kinesis_config(tmp_path, stream, kinesalite, moto)
    ok = run_agent("check", "-c", str(cfg), "--test-destination")
    assert ok.returncode == 0, ok.stderr
    assert f"KinesisStream:{stream}: OK (ACTIVE, 1 open shard(s))" in ok.stdout
    doc = json.loads(cfg.read_text())
    doc["flows"][0]["kinesisStream"] = "no-such-stream"
    cfg.write_text(json.dumps(doc))
    missing = run_agent("check", "-c", str(cfg), "--test-destination")
    assert missing.returncode == 1
    assert "KinesisStream:no-such-stream: FAILED:" in missing.stdout
    assert "ResourceNotFound" in missing.stdout
