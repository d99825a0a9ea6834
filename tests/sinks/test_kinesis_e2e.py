"""The real agent process shipping files to kinesalite and moto: every line arrives, faults included.

Each test writes an agent.json pointing kinesis.endpoint / firehose.endpoint at a peer (or at the
fault proxy in front of kinesalite), runs ``python -m agent run``, and reads the destination back.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import time
from collections import Counter
from pathlib import Path

import pytest
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from agent.hashspace import hash_key
from tests.peers.faultproxy import CHAOS, PASS, Fault, FaultProxy, at_random
from tests.peers.helpers import aws_client, new_stream, read_stream, shard_ranges
from tests.peers.servers import Peer
from tests.sinks.test_firehose import delivery_stream, s3_bodies
from tests.support.agent import kill_agent, rss_bytes, run_once, start_agent, stop_agent, wait_for
from tests.support.config import kinesis_config, logs_config
from tests.support.logs import append, logs_dir, numbered
from tests.support.streams import kinesis_counts

pytestmark = pytest.mark.slow


FAST_RETRY = {"retryInitialBackoffMillis": 5, "retryMaxBackoffMillis": 50}


def write_lines(path: Path, start: int, count: int, width: int = 0) -> list[bytes]:
    return append(path, numbered("rid", start, count, width))


class TestKinesisEndToEnd:
    def test_every_line_arrives_in_its_shard(self, kinesalite: Peer, tmp_path: Path) -> None:
        """Two files, 4 shards, DETERMINISTIC keys: every line once, each in MD5(key)'s shard."""
        stream = new_stream(kinesalite.endpoint, shards=4)
        d = logs_dir(tmp_path)
        sent = write_lines(d / "a.log", 0, 6000) + write_lines(d / "b.log", 6000, 6000)
        config = kinesis_config(
            tmp_path, kinesalite.endpoint, stream, {"partitionKeyOption": "DETERMINISTIC"}
        )
        run_once(config, timeout=120)
        got = read_stream(kinesalite.endpoint, stream)
        assert Counter(d for recs in got.values() for _, d in recs) == Counter(sent)
        ranges = shard_ranges(kinesalite.endpoint, stream)
        for shard, recs in got.items():
            for key, data in recs:
                assert key == hashlib.md5(data).hexdigest()
                assert ranges[shard][0] <= hash_key(key) <= ranges[shard][1]

    def test_aggregated_lines_deaggregate_exactly(self, kinesalite: Peer, tmp_path: Path) -> None:
        """aggregateRecords: a consumer deaggregating with aws-kinesis-agg sees every line once."""
        stream = new_stream(kinesalite.endpoint, shards=2)
        sent = write_lines(logs_dir(tmp_path) / "a.log", 0, 20_000)
        config = kinesis_config(tmp_path, kinesalite.endpoint, stream, {"aggregateRecords": True})
        run_once(config, timeout=120)
        raw = [
            {
                "SequenceNumber": "1",
                "PartitionKey": k,
                "ApproximateArrivalTimestamp": datetime.datetime.now(datetime.UTC),
                "Data": data,
            }
            for recs in read_stream(kinesalite.endpoint, stream).values()
            for k, data in recs
        ]
        assert len(raw) < 20_000
        users = list(iter_deaggregate_records(raw, data_format="Boto3"))
        assert all(u["kinesis"]["aggregated"] for u in users)
        assert Counter(base64.b64decode(u["kinesis"]["data"]) for u in users) == Counter(sent)

    def test_faults_lose_and_duplicate_nothing(self, kinesalite: Peer, tmp_path: Path) -> None:
        """Throttling, 500/503 and resets all the way: every line arrives exactly once."""
        stream = new_stream(kinesalite.endpoint, shards=2)
        sent = write_lines(logs_dir(tmp_path) / "a.log", 0, 10_000)

        with FaultProxy(kinesalite.port, seed=3) as proxy:
            proxy.choose_with(CHAOS)
            config = kinesis_config(tmp_path, proxy.endpoint, stream, FAST_RETRY)
            run_once(config, timeout=120)
        assert Counter(e.fault.split()[0] for e in proxy.events)["throttle"] > 3
        assert kinesis_counts(kinesalite.endpoint, stream) == Counter(sent)

    def test_lost_responses_duplicate_exactly_their_records(
        self, kinesalite: Peer, tmp_path: Path
    ) -> None:
        """Stored but unanswered calls (connection dropped after forwarding) and stalls: the only
        duplicates are the records of the lost responses, and nothing is missing."""
        stream = new_stream(kinesalite.endpoint, shards=2)
        sent = write_lines(logs_dir(tmp_path) / "a.log", 0, 8000)

        lossy = at_random(
            PASS,
            Fault("lost"),
            Fault("throttle", fraction=0.5),
            Fault("stall", seconds=1),
            weights=[6, 2, 2, 1],
        )

        with FaultProxy(kinesalite.port, seed=11) as proxy:
            proxy.plan(Fault("lost"), Fault("stall", seconds=1), Fault("lost"))
            proxy.choose_with(lossy)
            config = kinesis_config(
                tmp_path,
                proxy.endpoint,
                stream,
                FAST_RETRY,
                # stalls end in the proxy's own reset after 1 s; a client timeout shorter than
                # a loaded kinesalite's answer would be an unanswered call the proxy cannot see
                socketTimeoutMillis=5000,
            )
            run_once(config, timeout=120)
        lost = Counter(d for e in proxy.events if e.fault == "lost" for d in e.forwarded)
        assert len(lost) >= 500
        got = kinesis_counts(kinesalite.endpoint, stream)
        assert set(got) == set(sent)
        assert Counter({d: n - 1 for d, n in got.items() if n > 1}) == lost

    def test_sigkill_loses_nothing(self, kinesalite: Peer, tmp_path: Path) -> None:
        """kill -9 while shipping, then restart: 0 lost; the duplicates are exactly the lines sent
        after the last saved checkpoint, at most one checkpoint interval plus one batch."""
        stream = new_stream(kinesalite.endpoint, shards=1)
        sent = write_lines(logs_dir(tmp_path) / "a.log", 0, 40_000)
        with FaultProxy(kinesalite.port) as proxy:
            # A slow service (0.1 s per call, ~5,000 lines/s) so the kill lands mid-file.
            proxy.choose_with(lambda rng: Fault("delay", seconds=0.1))
            config = kinesis_config(tmp_path, proxy.endpoint, stream)
            agent = start_agent(config)
            try:
                wait_for(
                    lambda: sum(len(e.forwarded) for e in proxy.events) >= 8000,
                    30,
                    what="the agent to ship 8000 lines",
                    interval=0.05,
                )
            finally:
                kill_agent(agent)
            before = kinesis_counts(kinesalite.endpoint, stream)
            assert 0 < len(before) < len(sent)
            proxy.choose_with(None)
            run_once(config, timeout=120)
        after = kinesis_counts(kinesalite.endpoint, stream)
        assert set(after) == set(sent), "lines lost"
        dupes = sorted(d for d, n in after.items() if n > 1)
        assert all(n <= 2 for n in after.values())
        # resent = everything from the checkpoint on: a suffix of what was stored before the kill
        if dupes:
            first = sent.index(dupes[0])
            assert dupes == sorted(d for d in sent[first:] if d in before)
        # at ~5,000 lines/s: one checkpoint interval (1 s) plus the batches in flight
        assert len(dupes) <= 7000

    def test_memory_bounded_while_destination_refuses(
        self, kinesalite: Peer, tmp_path: Path
    ) -> None:
        """A 24 MB backlog and a service answering 503 to everything: the agent's memory stays
        within its in-flight budget (the backlog waits in the file), then every line arrives."""
        stream = new_stream(kinesalite.endpoint, shards=2)
        sent = write_lines(logs_dir(tmp_path) / "a.log", 0, 60_000, width=400)
        with FaultProxy(kinesalite.port) as proxy:
            proxy.choose_with(lambda rng: Fault("status", status=503))
            config = kinesis_config(
                tmp_path,
                proxy.endpoint,
                stream,
                {
                    "maxInFlightBytes": 2 * 1024 * 1024,
                    "retryInitialBackoffMillis": 10,
                    "retryMaxBackoffMillis": 200,
                },
            )
            agent = start_agent(config)
            try:
                while not proxy.events:
                    assert agent.poll() is None
                    time.sleep(0.05)
                start_rss = rss_bytes(agent.pid)
                peak = start_rss
                end = time.monotonic() + 3
                while time.monotonic() < end:
                    peak = max(peak, rss_bytes(agent.pid))
                    time.sleep(0.05)
                assert len(proxy.events) > 5
                assert kinesis_counts(kinesalite.endpoint, stream) == Counter()
                proxy.choose_with(None)
                wait_for(
                    lambda: sum(len(e.forwarded) for e in proxy.events) >= len(sent),
                    90,
                    what="the backlog to be delivered after the outage",
                    interval=0.5,
                )
            finally:
                stop_agent(agent, timeout=20)
        file_size = (tmp_path / "logs" / "a.log").stat().st_size
        assert file_size > 24_000_000
        assert peak - start_rss < 8 * 1024 * 1024, (start_rss, peak)
        assert kinesis_counts(kinesalite.endpoint, stream) == Counter(sent)


class TestFirehoseEndToEnd:
    def test_every_line_lands_in_s3(self, moto: Peer, tmp_path: Path) -> None:
        """deliveryStream through moto: the S3 objects hold every line exactly once."""
        stream, bucket = delivery_stream(moto)
        sent = write_lines(logs_dir(tmp_path) / "a.log", 0, 3000)
        config = logs_config(
            tmp_path,
            {"deliveryStream": stream, "aggregatedRecordSizeBytes": 8192},
            **{"firehose.endpoint": moto.endpoint},
        )
        run_once(config, timeout=120)
        lines = [ln + b"\n" for body in s3_bodies(moto, bucket) for ln in body.splitlines()]
        assert Counter(lines) == Counter(sent)
        assert aws_client("s3", moto.endpoint).list_objects_v2(Bucket=bucket)["KeyCount"] >= 1
