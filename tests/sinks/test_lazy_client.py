"""The AWS sinks build their botocore client at their first send, once, and fail that send clearly
when it cannot be built (issue 14: a run that sends nothing never imports botocore).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

import agent.sinks.firehose
import agent.sinks.kinesis
from agent.awsclient import make_client
from agent.config import AgentConfig, FlowConfig
from agent.errors import FatalSinkError
from agent.observability.metrics import FlowMetrics
from agent.sinks.firehose import FirehoseSink
from agent.sinks.kinesis import KinesisSink, kinesis_client
from tests.peers.helpers import read_stream
from tests.peers.servers import Peer
from tests.support.agent import running_agent, snapshot_when, wait_for
from tests.support.config import kinesis_config, state_socket
from tests.support.logs import line_records, write_log

BAD_REGION = "not a region!"


def kinesis_sink(endpoint: str, stream: str) -> KinesisSink:
    flow = FlowConfig(file_pattern="/l/*.log", kinesis_stream=stream)
    agent = AgentConfig(flows=(flow,), kinesis_endpoint=endpoint)
    return KinesisSink.open(agent, flow, metrics=FlowMetrics(flow.flow_id, flow.destination))


class Builds:
    """Wraps a client builder: counts the builds, each taking ``seconds`` (a real one ~0.15 s),
    so that a second caller arrives while the first is still building."""

    def __init__(self, build: Callable[[AgentConfig], Any], seconds: float = 0.0) -> None:
        self.build = build
        self.seconds = seconds
        self.count = 0
        self.threads: set[str] = set()

    def __call__(self, agent: AgentConfig) -> Any:
        self.count += 1
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        return self.build(agent)


def test_kinesis_client_is_built_at_the_first_send_and_only_then(
    kinesalite: Peer, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = Builds(kinesis_client)
    monkeypatch.setattr(agent.sinks.kinesis, "kinesis_client", builds)
    sink = kinesis_sink(kinesalite.endpoint, stream)
    assert builds.count == 0
    assert kinesalite.endpoint in repr(sink)  # the endpoint is known before the client is
    asyncio.run(sink.aclose())  # closing a sink that never sent builds nothing either
    assert builds.count == 0

    sink = kinesis_sink(kinesalite.endpoint, stream)
    batches = [line_records(3, start=i * 3) for i in range(3)]
    for batch in batches:
        result = asyncio.run(sink.send(batch, ()))
        assert result.error is None and result.delivered == batch
    assert builds.count == 1
    # built in a worker thread: the event loop went on meanwhile
    assert threading.main_thread().name not in builds.threads
    [records] = read_stream(kinesalite.endpoint, stream).values()
    assert [d for _, d in records] == [r.data for b in batches for r in b]


def test_sends_in_flight_together_build_one_client(
    kinesalite: Peer, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sends (or two lanes) that both find no client: the second waits for the first's."""
    builds = Builds(kinesis_client, seconds=0.3)
    monkeypatch.setattr(agent.sinks.kinesis, "kinesis_client", builds)
    sink = kinesis_sink(kinesalite.endpoint, stream)
    first, second = line_records(2), line_records(2, start=2)

    async def both() -> list[Any]:
        return list(await asyncio.gather(sink.send(first, ()), sink.send(second, ())))

    results = asyncio.run(both())
    assert builds.count == 1
    assert [r.delivered for r in results] == [first, second]
    assert all(r.error is None for r in results)


def test_the_client_property_builds_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever asks first (a lane's call, ListShards, a test) builds; the others get that one."""
    made: list[object] = []

    def connect() -> object:
        time.sleep(0.2)
        made.append(object())
        return made[-1]

    sink = KinesisSink(None, "s", connect=connect)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(sink.client)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(made) == 1 and got == made * 4


def test_firehose_client_is_built_at_the_first_send(monkeypatch: pytest.MonkeyPatch) -> None:
    stubbed: list[Stubber] = []

    def stubbed_client(agent_config: AgentConfig) -> Any:
        client = make_client(agent_config, "firehose")
        stub = Stubber(client)
        stub.add_response(
            "put_record_batch",
            {"FailedPutCount": 0, "RequestResponses": [{"RecordId": "1"}, {"RecordId": "2"}]},
        )
        stub.activate()
        stubbed.append(stub)
        return client

    builds = Builds(stubbed_client)
    monkeypatch.setattr(agent.sinks.firehose, "firehose_client", builds)
    flow = FlowConfig(file_pattern="/l/*.log", delivery_stream="d")
    config = AgentConfig(flows=(flow,), firehose_endpoint="http://127.0.0.1:9")
    sink = FirehoseSink.open(config, flow)
    assert builds.count == 0 and "http://127.0.0.1:9" in repr(sink)
    batch = line_records(2)
    result = asyncio.run(sink.send(batch, ()))
    assert result.error is None and result.delivered == batch
    assert builds.count == 1
    stubbed[0].assert_no_pending_responses()


def test_a_client_that_cannot_be_built_fails_the_send_fatally_and_is_tried_again(
    kinesalite: Peer, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A region botocore refuses from the environment (agent.json was checked when it loaded):
    the flow still starts; its send fails with an error that says why and gives back every
    record; the next send tries to build again, so fixing the environment heals it."""
    monkeypatch.setenv("AWS_REGION", BAD_REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", BAD_REGION)
    sink = kinesis_sink(kinesalite.endpoint, stream)
    batch = line_records(3)
    result = asyncio.run(sink.send(batch, ()))
    assert isinstance(result.error, FatalSinkError)
    assert "cannot build the AWS client" in str(result.error)
    assert BAD_REGION in str(result.error)
    assert result.retry == batch and not result.delivered
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    result = asyncio.run(sink.send(batch, ()))
    assert result.error is None and result.delivered == batch


def test_an_agent_whose_client_cannot_be_built_shows_the_flow_failing(
    tmp_path: Path, kinesalite: Peer, stream: str
) -> None:
    """The real process: it starts (nothing in agent.json is wrong), and once it has something
    to send the flow is ``failing`` with the reason in status and in one ERROR line; nothing is
    sent and it still stops cleanly."""
    write_log(tmp_path / "logs" / "app.log", 3)
    config = kinesis_config(
        tmp_path,
        kinesalite.endpoint,
        stream,
        checkpoints=tmp_path / "state" / "checkpoints.db",
        shutdownTimeoutMillis=500,  # it cannot drain: the records stay in the file
    )
    log = tmp_path / "agent.log"
    env = {"AWS_REGION": BAD_REGION, "AWS_DEFAULT_REGION": BAD_REGION}
    with running_agent(config, log, env=env) as proc:
        snap = wait_for(
            snapshot_when(
                state_socket(tmp_path), lambda s: s["flows"][0]["status"] == "failing", proc
            ),
            what="the flow to be shown failing",
            log=log,
        )
        [flow] = snap["flows"]
        assert (
            BAD_REGION in flow["last_error"] and "cannot build the AWS client" in flow["last_error"]
        )
        assert snap["records_sent"] == 0
    errors = [line for line in log.read_text().splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert "cannot deliver" in errors[0] and BAD_REGION in errors[0]
    assert all(not records for records in read_stream(kinesalite.endpoint, stream).values())
