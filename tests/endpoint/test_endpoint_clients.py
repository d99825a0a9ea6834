"""The store's Kinesis endpoint through other real clients: the AWS CLI, the JavaScript SDK v3,
the agent's own Kinesis sink (aggregated or not), a boto3 consumer of what the agent ships, and
a kill -9 of the serving process in the middle of PutRecords."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.endpoint.sigv4 import KeyPair
from tests.peers.helpers import aws_client, deaggregate, read_stream
from tests.peers.servers import (
    PEERS_DIR,
    TEST_ENV,
    Peer,
    ensure_kinesalite,
    free_port,
    start_store_endpoint,
)
from tests.support.agent import (
    AGENT,
    agent_env,
    run_agent,
    run_once,
    start_agent,
    stop_agent,
    wait_for,
)
from tests.support.config import logs_config
from tests.support.endpoint import endpoint_thread
from tests.support.logs import append, logs_dir, numbered


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Peer]:
    peer = start_store_endpoint(tmp_path / "store", tmp_path)
    yield peer
    peer.stop()


def aws_cli(endpoint: str, *args: str) -> Any:
    aws = Path(sys.executable).parent / "aws"
    done = subprocess.run(
        [str(aws), "kinesis", *args, "--endpoint-url", endpoint, "--output", "json"],
        env={**os.environ, **TEST_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_aws_cli_reads_the_store(serve: Peer) -> None:
    """aws kinesis list-streams / describe-stream-summary / get-shard-iterator / get-records."""
    client = aws_client("kinesis", serve.endpoint)
    client.create_stream(StreamName="web", ShardCount=1)
    client.put_records(
        StreamName="web", Records=[{"Data": b"line %d" % i, "PartitionKey": "k"} for i in range(3)]
    )
    assert aws_cli(serve.endpoint, "list-streams")["StreamNames"] == ["web"]
    summary = aws_cli(serve.endpoint, "describe-stream-summary", "--stream-name", "web")
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 1
    iterator = aws_cli(
        serve.endpoint,
        "get-shard-iterator",
        "--stream-name",
        "web",
        "--shard-id",
        "shardId-000000000000",
        "--shard-iterator-type",
        "TRIM_HORIZON",
    )["ShardIterator"]
    page = aws_cli(serve.endpoint, "get-records", "--shard-iterator", iterator)
    assert [base64.b64decode(r["Data"]) for r in page["Records"]] == [
        b"line 0",
        b"line 1",
        b"line 2",
    ]
    assert page["NextShardIterator"]


def test_javascript_sdk_puts_and_gets(serve: Peer) -> None:
    """@aws-sdk/client-kinesis creates a stream, puts 200 records and reads each shard back."""
    result = run_js_sdk(serve.endpoint)
    assert result["failed"] == 0 and result["openShards"] == 2
    read = result["read"]
    datas = Counter(d for shard in read.values() for _seq, d in shard)
    assert datas == Counter(f"js-record-{i}" for i in range(200))
    for shard in read.values():
        seqs = [int(seq) for seq, _d in shard]
        assert seqs == sorted(seqs)
    # and boto3 reads the same thing the JS SDK wrote
    assert sum(len(v) for v in read_stream(serve.endpoint, "js").values()) == 200


def test_javascript_sdk_signatures_checked(tmp_path: Path) -> None:
    """With a key pair, the JS SDK's SigV4 over HTTP/2 (host as :authority) is accepted."""
    with endpoint_thread(tmp_path, keys=KeyPair("testing", "testing")) as endpoint:
        result = run_js_sdk(endpoint.url)
    assert result["failed"] == 0
    assert sum(len(v) for v in result["read"].values()) == 200


def run_js_sdk(endpoint: str) -> Any:
    ensure_kinesalite()  # npm install of tests/peers, the JavaScript SDK included
    node = shutil.which("node")
    assert node is not None, "node is needed for the JavaScript SDK test"
    done = subprocess.run(
        [node, str(PEERS_DIR / "kinesis-sdk-js.js"), endpoint, "js", "200"],
        cwd=PEERS_DIR,
        env={**os.environ, **TEST_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("aggregate", [False, True])
def test_agent_kinesis_sink_into_the_store(serve: Peer, tmp_path: Path, aggregate: bool) -> None:
    """The agent's own Kinesis sink ships into the endpoint; a consumer (deaggregating with
    aws-kinesis-agg when aggregated) reads every line exactly once."""
    aws_client("kinesis", serve.endpoint).create_stream(StreamName="logs", ShardCount=2)
    sent = append(logs_dir(tmp_path) / "a.log", numbered("rid", 0, 5000))
    config = logs_config(
        tmp_path,
        {"kinesisStream": "logs", "aggregateRecords": aggregate},
        **{"kinesis.endpoint": serve.endpoint},
    )
    run_once(config, timeout=120)
    stored = [item for recs in read_stream(serve.endpoint, "logs").values() for item in recs]
    if aggregate:
        users = deaggregate(stored)
        assert len(stored) < 5000 and all(u["kinesis"]["aggregated"] for u in users)
        got = Counter(base64.b64decode(u["kinesis"]["data"]) for u in users)
    else:
        got = Counter(data for _key, data in stored)
    assert got == Counter(sent)


def consume_all(endpoint: str, stream: str, want: int, timeout: float = 60) -> dict[str, list[Any]]:
    """A boto3 consumer loop over every shard until ``want`` records were read (or timeout)."""
    client = aws_client("kinesis", endpoint)
    shards = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]
    its = {
        s: client.get_shard_iterator(
            StreamName=stream, ShardId=s, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for s in shards
    }
    read: dict[str, list[Any]] = {s: [] for s in shards}
    deadline = time.monotonic() + timeout
    while sum(map(len, read.values())) < want and time.monotonic() < deadline:
        idle = True
        for shard in shards:
            page = client.get_records(ShardIterator=its[shard])
            read[shard] += [(r["SequenceNumber"], r["Data"]) for r in page["Records"]]
            its[shard] = page["NextShardIterator"]
            idle = idle and not page["Records"]
        if idle:
            time.sleep(0.05)  # a polling consumer's pause, as a KCL worker has
    return read


def test_agent_endpoint_serves_what_it_ships(tmp_path: Path) -> None:
    """localStore.listen: a boto3 consumer reads exactly what the agent shipped, per-shard in
    sequence order, while an API producer writes the same stream and a standalone ``serve``
    reads beside the agent (not refused by its lock)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    store = tmp_path / "store"
    config = logs_config(
        tmp_path,
        {"localStream": "web"},
        **{"localStore.directory": str(store), "localStore.listen": f"127.0.0.1:{port}"},
    )
    log = logs_dir(tmp_path) / "a.log"
    sent = append(log, numbered("rid", 0, 3000))
    agent = start_agent(config, log=tmp_path / "agent.err")
    try:
        client = aws_client("kinesis", endpoint)
        wait_for(lambda: "web" in stream_names(client), 30, interval=0.05)
        extra = [{"Data": b"api %d" % i, "PartitionKey": f"api-{i}"} for i in range(500)]
        client.put_records(StreamName="web", Records=extra)
        sent += append(log, numbered("rid", 3000, 2000))
        read = consume_all(endpoint, "web", 5500)
        beside = start_store_endpoint(store, tmp_path)
        try:
            assert sum(len(v) for v in read_stream(beside.endpoint, "web").values()) >= 5500
        finally:
            beside.stop()
    finally:
        stop_agent(agent)
    got = Counter(d for shard in read.values() for _seq, d in shard)
    assert got == Counter(sent) + Counter(e["Data"] for e in extra)
    for shard in read.values():
        seqs = [int(seq) for seq, _d in shard]
        assert seqs == sorted(seqs)


def test_kill_9_during_put_records(tmp_path: Path) -> None:
    """kill -9 of ``serve`` while a client puts, four times at random instants of a call in
    flight: every acknowledged batch is there after a restart, and no batch is there in part."""
    store = tmp_path / "store"
    rng = random.Random(7)
    acked: list[int] = []
    next_batch = 0
    for round_ in range(4):
        peer = start_store_endpoint(store, tmp_path)
        if round_ == 0:
            aws_client("kinesis", peer.endpoint).create_stream(StreamName="s", ShardCount=2)
        in_flight = threading.Event()
        round_acked: list[int] = []

        def produce(
            endpoint: str = peer.endpoint,
            start: int = next_batch,
            round_acked: list[int] = round_acked,
            in_flight: threading.Event = in_flight,
        ) -> None:
            producer = aws_client("kinesis", endpoint)
            batch = start
            while True:
                records = [
                    {"Data": b"%d:%d:" % (batch, i) + b"x" * 200, "PartitionKey": f"{batch}-{i}"}
                    for i in range(500)
                ]
                if len(round_acked) >= 5:
                    in_flight.set()
                try:
                    producer.put_records(StreamName="s", Records=records)
                except Exception:
                    return  # the server died under this call: not acknowledged
                round_acked.append(batch)
                batch += 1

        thread = threading.Thread(target=produce)
        thread.start()
        assert in_flight.wait(30)
        time.sleep(rng.uniform(0, 0.02))  # somewhere inside the call (parse, commit, answer)
        os.kill(peer.process.pid, signal.SIGKILL)
        peer.process.wait(10)
        thread.join(30)
        peer.stop()
        acked += round_acked
        next_batch = max(round_acked) + 2  # the cut call's batch number is never reused
    peer = start_store_endpoint(store, tmp_path)
    try:
        per_batch = Counter(
            int(data.split(b":", 1)[0])
            for recs in read_stream(peer.endpoint, "s").values()
            for _key, data in recs
        )
    finally:
        peer.stop()
    assert all(per_batch[b] == 500 for b in acked)
    assert set(per_batch.values()) == {500}  # a call cut by the kill: all of it, or none


def test_bad_listen_address_is_a_config_error(tmp_path: Path) -> None:
    """A malformed localStore.listen stops the agent with exit 78 and one line naming the key."""
    config = logs_config(
        tmp_path,
        {"localStream": "web"},
        **{"localStore.directory": str(tmp_path / "store"), "localStore.listen": "host:port"},
    )
    logs_dir(tmp_path)
    done = run_agent("run", "-c", str(config))
    assert done.returncode == 78
    assert "localStore.listen" in done.stderr.strip().splitlines()[-1]


def test_serve_from_config_checks_the_agents_signatures(tmp_path: Path) -> None:
    """``serve -c`` with a key pair: the agent's Kinesis sink signing with that pair ships
    everything; a client with another secret is refused (InvalidSignatureException)."""
    import boto3
    import botocore.config
    import botocore.exceptions

    serve_config = tmp_path / "serve.json"
    serve_config.write_text(
        json.dumps(
            {
                "localStore.directory": str(tmp_path / "store"),
                "localStore.listen": "127.0.0.1:0",
                "localStore.accessKeyId": "AKIDSTORE",
                "localStore.secretAccessKey": "store-secret",
                "flows": [{"filePattern": str(tmp_path / "none" / "*.log"), "localStream": "x"}],
            }
        )
    )
    with (tmp_path / "serve.err").open("wb") as err:
        proc = subprocess.Popen(
            [*AGENT, "serve", "-c", str(serve_config)],
            stdout=subprocess.PIPE,
            stderr=err,
            env=agent_env(),
        )
    try:
        assert proc.stdout is not None
        endpoint = "http://127.0.0.1:" + proc.stdout.readline().decode().rsplit(":", 1)[1].strip()

        def client(secret: str) -> Any:
            return boto3.client(
                "kinesis",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="AKIDSTORE",
                aws_secret_access_key=secret,
                aws_session_token=None,
                config=botocore.config.Config(
                    retries={"total_max_attempts": 1, "mode": "standard"}
                ),
            )

        client("store-secret").create_stream(StreamName="logs", ShardCount=1)
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            client("other").list_streams()
        assert exc.value.response["Error"]["Code"] == "InvalidSignatureException"
        sent = append(logs_dir(tmp_path) / "a.log", numbered("rid", 0, 300))
        config = logs_config(
            tmp_path,
            {"kinesisStream": "logs"},
            **{
                "kinesis.endpoint": endpoint,
                "awsAccessKeyId": "AKIDSTORE",
                "awsSecretAccessKey": "store-secret",
            },
        )
        run_once(config, timeout=120)
        got = [d for recs in read_stream_signed(client("store-secret"), "logs") for d in recs]
        assert Counter(got) == Counter(sent)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def read_stream_signed(client: Any, stream: str) -> list[list[bytes]]:
    out = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        out.append([r["Data"] for r in client.get_records(ShardIterator=it)["Records"]])
    return out


def test_sighup_moves_the_agents_endpoint(tmp_path: Path) -> None:
    """A SIGHUP with a new localStore.listen closes the old listener and opens the new one."""
    first, second = free_port(), free_port()
    keys = {"localStore.directory": str(tmp_path / "store")}
    config = logs_config(
        tmp_path, {"localStream": "web"}, **keys, **{"localStore.listen": f"127.0.0.1:{first}"}
    )
    logs_dir(tmp_path)
    agent = start_agent(config, log=tmp_path / "agent.err")
    try:
        wait_for(lambda: answering(first), 30, interval=0.05)
        logs_config(
            tmp_path, {"localStream": "web"}, **keys, **{"localStore.listen": f"127.0.0.1:{second}"}
        )
        agent.send_signal(signal.SIGHUP)
        wait_for(lambda: answering(second), 30, interval=0.05)
        assert not answering(first)
    finally:
        stop_agent(agent)


def answering(port: int) -> bool:
    try:
        aws_client("kinesis", f"http://127.0.0.1:{port}").list_streams()
    except Exception:
        return False
    return True


def stream_names(client: Any) -> list[str]:
    """The streams an endpoint lists (none while it is not listening yet)."""
    try:
        names: list[str] = client.list_streams()["StreamNames"]
    except Exception:  # not listening yet
        return []
    return names
