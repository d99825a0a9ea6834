"""The store's Kinesis endpoint through boto3, a real Kinesis client: every operation and error shape."""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from agent.endpoint.limits import Rates, ShardLimits
from agent.endpoint.sigv4 import KeyPair
from tests.peers.helpers import aws_client
from tests.peers.servers import Peer, start_store_endpoint
from tests.support.endpoint import endpoint_thread


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """One ``kinesis-agent serve`` process for the module (each test makes its own streams)."""
    root = tmp_path_factory.mktemp("serve")
    peer = start_store_endpoint(root / "store", root)
    yield peer
    peer.stop()


@pytest.fixture
def kinesis(serve: Peer) -> Any:
    return aws_client("kinesis", serve.endpoint)


def new_name() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def error_of(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def assert_refused(code: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """The call fails with the Kinesis error ``code`` (HTTP 400, as every client error)."""
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        call(*args, **kwargs)
    assert error_of(exc) == (code, 400)


def drain(client: Any, iterator: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = client.get_records(ShardIterator=iterator)
        out += page["Records"]
        iterator = page["NextShardIterator"]
        if not page["Records"]:
            return out


def iterator(client: Any, stream: str, shard: str, kind: str, **extra: Any) -> str:
    return str(
        client.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType=kind, **extra
        )["ShardIterator"]
    )


class TestStreams:
    def test_create_list_describe_delete(self, kinesis: Any) -> None:
        """A created stream is listed, described with its shards' hash ranges, then deleted."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=3)
        kinesis.get_waiter("stream_exists").wait(StreamName=name)
        assert name in kinesis.list_streams()["StreamNames"]
        described = kinesis.describe_stream(StreamName=name)["StreamDescription"]
        assert described["StreamStatus"] == "ACTIVE"
        assert [s["ShardId"] for s in described["Shards"]] == [
            f"shardId-00000000000{i}" for i in range(3)
        ]
        assert described["Shards"][0]["HashKeyRange"]["StartingHashKey"] == "0"
        assert described["Shards"][-1]["HashKeyRange"]["EndingHashKey"] == str(2**128 - 1)
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert (summary["OpenShardCount"], summary["RetentionPeriodHours"]) == (3, 24)
        kinesis.delete_stream(StreamName=name)
        assert name not in kinesis.list_streams()["StreamNames"]
        assert_refused("ResourceNotFoundException", kinesis.describe_stream, StreamName=name)

    def test_create_twice_is_resource_in_use(self, kinesis: Any) -> None:
        """CreateStream of a taken name answers ResourceInUseException, as Kinesis does."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        assert_refused(
            "ResourceInUseException", kinesis.create_stream, StreamName=name, ShardCount=1
        )

    def test_bad_name_and_too_many_shards(self, kinesis: Any) -> None:
        """A name outside [a-zA-Z0-9_.-] is a ValidationException; too many shards a limit."""
        assert_refused("ValidationException", kinesis.create_stream, StreamName="a/b", ShardCount=1)
        assert_refused(
            "LimitExceededException", kinesis.create_stream, StreamName=new_name(), ShardCount=5000
        )

    def test_list_shards_pages_with_next_token(self, kinesis: Any) -> None:
        """ListShards pages through NextToken; boto3's paginator sees every shard once."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=5)
        first = kinesis.list_shards(StreamName=name, MaxResults=2)
        assert len(first["Shards"]) == 2 and first["NextToken"]
        pages = kinesis.get_paginator("list_shards").paginate(
            StreamName=name, PaginationConfig={"PageSize": 2}
        )
        ids = [s["ShardId"] for page in pages for s in page["Shards"]]
        assert ids == [f"shardId-00000000000{i}" for i in range(5)]
        assert_refused(
            "InvalidArgumentException",
            kinesis.list_shards,
            StreamName=name + "x",
            NextToken=first["NextToken"],
        )

    def test_list_streams_pages(self, kinesis: Any) -> None:
        """ListStreams with a Limit says HasMoreStreams and continues from the last name."""
        for _ in range(3):
            kinesis.create_stream(StreamName=new_name(), ShardCount=1)
        every = kinesis.list_streams()["StreamNames"]
        page = kinesis.list_streams(Limit=2)
        assert page["HasMoreStreams"] and page["StreamNames"] == every[:2]
        rest = kinesis.list_streams(NextToken=page["NextToken"])["StreamNames"]
        assert page["StreamNames"] + rest == every

    def test_retention_up_and_down(self, kinesis: Any) -> None:
        """Increase then decrease retention; the wrong direction is an InvalidArgumentException."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=72)
        described = kinesis.describe_stream(StreamName=name)["StreamDescription"]
        assert described["RetentionPeriodHours"] == 72
        assert_refused(
            "InvalidArgumentException",
            kinesis.increase_stream_retention_period,
            StreamName=name,
            RetentionPeriodHours=48,
        )
        kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert summary["RetentionPeriodHours"] == 48

    def test_tags(self, kinesis: Any) -> None:
        """Tags are added, overwritten, listed in key order and paged with HasMoreTags."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        assert kinesis.list_tags_for_stream(StreamName=name)["Tags"] == []
        kinesis.add_tags_to_stream(StreamName=name, Tags={"team": "web", "env": "dev"})
        kinesis.add_tags_to_stream(StreamName=name, Tags={"env": "prod"})
        tags = kinesis.list_tags_for_stream(StreamName=name)
        assert tags["Tags"] == [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "web"}]
        page = kinesis.list_tags_for_stream(StreamName=name, Limit=1)
        assert page["HasMoreTags"] and len(page["Tags"]) == 1


class TestRecords:
    def test_put_records_per_entry_results_and_shard_order(self, kinesis: Any) -> None:
        """PutRecords answers each entry's shard and sequence; each shard reads back in order."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=2)
        entries = [{"Data": f"r{i}".encode(), "PartitionKey": f"k{i}"} for i in range(300)]
        answer = kinesis.put_records(StreamName=name, Records=entries)
        assert answer["FailedRecordCount"] == 0 and len(answer["Records"]) == 300
        by_shard: dict[str, list[tuple[str, bytes]]] = {}
        for entry, result in zip(entries, answer["Records"], strict=True):
            by_shard.setdefault(result["ShardId"], []).append(
                (result["SequenceNumber"], entry["Data"])
            )
        assert len(by_shard) == 2
        for shard, expected in by_shard.items():
            read = drain(kinesis, iterator(kinesis, name, shard, "TRIM_HORIZON"))
            assert [(r["SequenceNumber"], r["Data"]) for r in read] == expected
            assert [int(r["SequenceNumber"]) for r in read] == sorted(
                int(r["SequenceNumber"]) for r in read
            )

    def test_explicit_hash_key_places_the_record(self, kinesis: Any) -> None:
        """ExplicitHashKey overrides the partition key's MD5, for PutRecord and PutRecords."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=4)
        top = str(2**128 - 1)
        one = kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="a", ExplicitHashKey="0")
        many = kinesis.put_records(
            StreamName=name,
            Records=[{"Data": b"y", "PartitionKey": "a", "ExplicitHashKey": top}],
        )
        assert one["ShardId"] == "shardId-000000000000"
        assert many["Records"][0]["ShardId"] == "shardId-000000000003"
        assert_refused(
            "InvalidArgumentException",
            kinesis.put_record,
            StreamName=name,
            Data=b"x",
            PartitionKey="a",
            ExplicitHashKey=str(2**128),
        )

    def test_sequence_number_for_ordering(self, kinesis: Any) -> None:
        """A record put with SequenceNumberForOrdering of the previous one gets a larger number."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        first = kinesis.put_record(StreamName=name, Data=b"1", PartitionKey="k")
        second = kinesis.put_record(
            StreamName=name,
            Data=b"2",
            PartitionKey="k",
            SequenceNumberForOrdering=first["SequenceNumber"],
        )
        assert int(second["SequenceNumber"]) > int(first["SequenceNumber"])

    def test_put_limits(self, kinesis: Any) -> None:
        """Over 500 entries is a ValidationException; over 5 MiB a call, or data and key over
        1 MiB a record, an InvalidArgumentException."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        assert_refused(
            "ValidationException",
            kinesis.put_records,
            StreamName=name,
            Records=[{"Data": b"x", "PartitionKey": "k"}] * 501,
        )
        full = b"x" * (1024 * 1024)  # data of 1 MiB leaves no room for its key
        for call in (
            lambda: kinesis.put_record(StreamName=name, Data=full, PartitionKey="k"),
            lambda: kinesis.put_records(
                StreamName=name, Records=[{"Data": full, "PartitionKey": "k"}]
            ),
        ):
            assert_refused("InvalidArgumentException", call)
        big = [{"Data": b"x" * (1024 * 1024 - 10), "PartitionKey": "k"}] * 6
        assert_refused(
            "InvalidArgumentException", kinesis.put_records, StreamName=name, Records=big
        )
        assert_refused(
            "ResourceNotFoundException",
            kinesis.put_record,
            StreamName="nope-" + name,
            Data=b"x",
            PartitionKey="k",
        )
        assert drain(kinesis, iterator(kinesis, name, "shardId-000000000000", "TRIM_HORIZON")) == []

    def test_iterator_types(self, kinesis: Any) -> None:
        """TRIM_HORIZON, AT/AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP and LATEST start where Kinesis does."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        shard = "shardId-000000000000"
        seqs = [
            kinesis.put_record(StreamName=name, Data=b"%d" % i, PartitionKey="k")["SequenceNumber"]
            for i in range(3)
        ]
        latest = iterator(kinesis, name, shard, "LATEST")
        time.sleep(0.02)  # AT_TIMESTAMP needs a time strictly between two puts
        middle = time.time()
        time.sleep(0.02)
        kinesis.put_record(StreamName=name, Data=b"3", PartitionKey="k")

        def datas(it: str) -> list[bytes]:
            return [r["Data"] for r in drain(kinesis, it)]

        assert datas(iterator(kinesis, name, shard, "TRIM_HORIZON")) == [b"0", b"1", b"2", b"3"]
        at = iterator(kinesis, name, shard, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[1])
        assert datas(at) == [b"1", b"2", b"3"]
        after = iterator(
            kinesis, name, shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[1]
        )
        assert datas(after) == [b"2", b"3"]
        assert datas(iterator(kinesis, name, shard, "AT_TIMESTAMP", Timestamp=middle)) == [b"3"]
        assert datas(latest) == [b"3"]
        assert_refused(
            "InvalidArgumentException",
            iterator,
            kinesis,
            name,
            shard,
            "AT_SEQUENCE_NUMBER",
            StartingSequenceNumber="12x",
        )
        assert_refused(
            "ResourceNotFoundException", iterator, kinesis, name, "shardId-000000000009", "LATEST"
        )

    def test_get_records_pages_and_millis_behind(self, kinesis: Any) -> None:
        """Limit bounds a page; MillisBehindLatest is positive until the reader reaches the tip."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        kinesis.put_records(
            StreamName=name, Records=[{"Data": b"%d" % i, "PartitionKey": "k"} for i in range(25)]
        )
        it = iterator(kinesis, name, "shardId-000000000000", "TRIM_HORIZON")
        seen: list[bytes] = []
        behind = []
        for _ in range(3):
            page = kinesis.get_records(ShardIterator=it, Limit=10)
            seen += [r["Data"] for r in page["Records"]]
            behind.append(page["MillisBehindLatest"])
            it = page["NextShardIterator"]
        assert seen == [b"%d" % i for i in range(25)]
        assert behind[-1] == 0
        assert kinesis.get_records(ShardIterator=it)["Records"] == []

    def test_get_records_stops_at_ten_mib(self, kinesis: Any) -> None:
        """A page holds at most 10 MiB of data and keys: ten records of ~1 MiB, then the rest."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        big = [bytes([i]) * (1024 * 1024 - 1000) for i in range(12)]
        for i in range(0, 12, 4):
            kinesis.put_records(
                StreamName=name, Records=[{"Data": d, "PartitionKey": "k"} for d in big[i : i + 4]]
            )
        it = iterator(kinesis, name, "shardId-000000000000", "TRIM_HORIZON")
        first = kinesis.get_records(ShardIterator=it)
        assert [r["Data"] for r in first["Records"]] == big[:10]
        assert first["MillisBehindLatest"] >= 0
        rest = kinesis.get_records(ShardIterator=first["NextShardIterator"])
        assert [r["Data"] for r in rest["Records"]] == big[10:]

    def test_forged_iterator_is_refused(self, kinesis: Any) -> None:
        """An iterator whose position was edited fails its HMAC: InvalidArgumentException."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        it = iterator(kinesis, name, "shardId-000000000000", "LATEST")
        raw = bytearray(base64.urlsafe_b64decode(it))
        raw[8] ^= 1  # inside the position
        forged = base64.urlsafe_b64encode(bytes(raw)).decode()
        assert_refused("InvalidArgumentException", kinesis.get_records, ShardIterator=forged)

    def test_two_consumers_each_read_everything_once(self, kinesis: Any) -> None:
        """Two consumers at different positions, interleaved, each read every record exactly once."""
        name = new_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        shard = "shardId-000000000000"
        batch = [{"Data": b"a%d" % i, "PartitionKey": "k"} for i in range(50)]
        kinesis.put_records(StreamName=name, Records=batch)
        early = iterator(kinesis, name, shard, "TRIM_HORIZON")
        late = iterator(kinesis, name, shard, "LATEST")
        kinesis.put_records(
            StreamName=name, Records=[{"Data": b"b%d" % i, "PartitionKey": "k"} for i in range(50)]
        )
        got: dict[str, list[bytes]] = {"early": [], "late": []}
        its = {"early": early, "late": late}
        for _ in range(20):
            for who in its:
                page = kinesis.get_records(ShardIterator=its[who], Limit=7)
                got[who] += [r["Data"] for r in page["Records"]]
                its[who] = page["NextShardIterator"]
        assert got["early"] == [b"a%d" % i for i in range(50)] + [b"b%d" % i for i in range(50)]
        assert got["late"] == [b"b%d" % i for i in range(50)]

    def test_iterators_survive_a_server_restart(self, tmp_path: Path) -> None:
        """An iterator issued before ``serve`` restarts reads on after it (the key is in the store)."""
        peer = start_store_endpoint(tmp_path / "store", tmp_path)
        try:
            client = aws_client("kinesis", peer.endpoint)
            client.create_stream(StreamName="s", ShardCount=1)
            client.put_record(StreamName="s", Data=b"before", PartitionKey="k")
            it = iterator(client, "s", "shardId-000000000000", "TRIM_HORIZON")
        finally:
            peer.stop()
        peer = start_store_endpoint(tmp_path / "store", tmp_path)
        try:
            client = aws_client("kinesis", peer.endpoint)
            assert [r["Data"] for r in client.get_records(ShardIterator=it)["Records"]] == [
                b"before"
            ]
        finally:
            peer.stop()


class TestInProcess:
    def test_iterator_expires_after_five_minutes(self, tmp_path: Path) -> None:
        """An iterator older than 300 s answers ExpiredIteratorException."""
        with endpoint_thread(tmp_path) as endpoint:
            client = aws_client("kinesis", endpoint.url)
            client.create_stream(StreamName="s", ShardCount=1)
            it = iterator(client, "s", "shardId-000000000000", "TRIM_HORIZON")
            assert endpoint.api is not None
            endpoint.api.clock = lambda: time.time() + 299
            client.get_records(ShardIterator=it)
            endpoint.api.clock = lambda: time.time() + 301
            assert_refused("ExpiredIteratorException", client.get_records, ShardIterator=it)

    def test_signatures_checked_with_a_key_pair(self, tmp_path: Path) -> None:
        """Given a key pair, the endpoint accepts botocore's SigV4 and refuses a wrong key."""
        keys = KeyPair("AKIDLOCAL", "local-secret")
        with endpoint_thread(tmp_path, keys=keys) as endpoint:
            good = _client(endpoint.url, "AKIDLOCAL", "local-secret")
            good.create_stream(StreamName="s", ShardCount=1)
            assert good.list_streams()["StreamNames"] == ["s"]
            assert_refused(
                "InvalidSignatureException",
                _client(endpoint.url, "AKIDLOCAL", "wrong").list_streams,
            )
            assert_refused(
                "UnrecognizedClientException",
                _client(endpoint.url, "AKIDOTHER", "local-secret").list_streams,
            )

    def test_shard_limits_throttle(self, tmp_path: Path) -> None:
        """With limits on, a shard's 1,000 records/s and 5 reads/s answer
        ProvisionedThroughputExceededException: whole calls, and entries of PutRecords."""
        now = [1000.0]
        limits = ShardLimits(Rates(), clock=lambda: now[0])
        with endpoint_thread(tmp_path, limits=limits) as endpoint:
            client = _client(endpoint.url, "testing", "testing")
            client.create_stream(StreamName="s", ShardCount=1)
            batch = [{"Data": b"x", "PartitionKey": "k"}] * 500
            assert client.put_records(StreamName="s", Records=batch)["FailedRecordCount"] == 0
            assert client.put_records(StreamName="s", Records=batch)["FailedRecordCount"] == 0
            third = client.put_records(StreamName="s", Records=batch[:10])
            assert third["FailedRecordCount"] == 10
            assert third["Records"][0]["ErrorCode"] == "ProvisionedThroughputExceededException"
            assert_refused(
                "ProvisionedThroughputExceededException",
                client.put_record,
                StreamName="s",
                Data=b"x",
                PartitionKey="k",
            )
            now[0] += 1.0  # a second later the shard takes records again
            assert client.put_records(StreamName="s", Records=batch)["FailedRecordCount"] == 0
            it = iterator(client, "s", "shardId-000000000000", "LATEST")
            for _ in range(5):
                it = client.get_records(ShardIterator=it)["NextShardIterator"]
            assert_refused(
                "ProvisionedThroughputExceededException", client.get_records, ShardIterator=it
            )


def _client(url: str, key_id: str, secret: str) -> Any:
    import boto3
    import botocore.config

    return boto3.client(
        "kinesis",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=None,
        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def test_put_records_data_of_every_length_round_trips(kinesis: Any) -> None:
    """Data of every length modulo 3 (base64 padding of none, one or two) and empty data come
    back byte for byte, through PutRecords' batched decoding."""
    name = new_name()
    kinesis.create_stream(StreamName=name, ShardCount=1)
    datas = [os.urandom(n) for n in (0, 1, 2, 3, 4, 5, 199, 200, 201, 202, 4096)] * 3
    kinesis.put_records(StreamName=name, Records=[{"Data": d, "PartitionKey": "k"} for d in datas])
    read = drain(kinesis, iterator(kinesis, name, "shardId-000000000000", "TRIM_HORIZON"))
    assert [r["Data"] for r in read] == datas
