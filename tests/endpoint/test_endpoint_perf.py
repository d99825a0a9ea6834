"""What the endpoint's speed-ups must keep: a stream changed elsewhere is seen, the WAL is checkpointed.

The endpoint keeps a stream's layout (and its cache of where partition keys land) across calls
and checks it against the database with one read; its own commits leave WAL checkpoints to a
connection beside them (tests/bench/bench_endpoint.py measures the gain).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.endpoint.records import _records_json_general, records_json
from agent.endpoint.server import KinesisEndpoint
from agent.store import admin
from agent.store.model import format_sequence
from agent.store.sqlite import DB_NAME
from agent.store.store import StreamStore
from tests.peers.helpers import aws_client
from tests.support.endpoint import endpoint_thread


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[KinesisEndpoint]:
    with endpoint_thread(tmp_path) as started:
        yield started


def shards_of(answer: dict[str, object]) -> set[str]:
    return {r["ShardId"] for r in answer["Records"]}  # type: ignore[attr-defined]


def test_a_stream_recreated_or_changed_elsewhere_is_seen_by_the_next_call(
    tmp_path: Path, endpoint: KinesisEndpoint
) -> None:
    kinesis = aws_client("kinesis", endpoint.url)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    entries = [{"Data": b"x", "PartitionKey": str(i)} for i in range(64)]
    assert shards_of(kinesis.put_records(StreamName="s", Records=entries)) == {
        "shardId-000000000000"
    }
    assert endpoint.api is not None
    layout = endpoint.api.store._streams["s"]
    kinesis.put_records(StreamName="s", Records=entries)
    assert endpoint.api.store._streams["s"] is layout  # kept: its placements are remembered

    other = StreamStore.open(tmp_path)  # `kinesis-agent serve` beside us, or the agent
    try:
        admin.delete_stream(other, "s")
        admin.create_stream(other, "s", 4, 24)
        answer = kinesis.put_records(StreamName="s", Records=entries)
        assert len(shards_of(answer)) == 4  # the new layout, not the cached one-shard stream
        admin.set_retention(other, "s", 48)
    finally:
        other.close()
    summary = kinesis.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]
    assert (summary["OpenShardCount"], summary["RetentionPeriodHours"]) == (4, 48)


def test_the_endpoint_checkpoints_the_wal_beside_its_commits(
    tmp_path: Path, endpoint: KinesisEndpoint
) -> None:
    """Its connection does not checkpoint (SQLite's autocheckpoint is off there), so unless the
    endpoint's own checkpointer runs, the WAL only grows and the database file never fills."""
    kinesis = aws_client("kinesis", endpoint.url)
    kinesis.create_stream(StreamName="s", ShardCount=2)
    db = tmp_path / DB_NAME
    before = db.stat().st_size
    entries = [{"Data": b"y" * 1000, "PartitionKey": str(i)} for i in range(500)]
    for _ in range(4):
        kinesis.put_records(StreamName="s", Records=entries)
    deadline = time.monotonic() + 10
    while db.stat().st_size < before + 2_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.stat().st_size >= before + 2_000_000, "the WAL was never checkpointed"
    # and everything is readable from the database file alone, without the WAL
    with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as raw:
        tables = [n for (n,) in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = [
            raw.execute(f"SELECT total(count) FROM {t}").fetchone()[0]
            for t in tables
            if t.startswith("records_")
        ]
    assert sum(counts) == 2000


def test_records_render_as_the_general_json_would(tmp_path: Path) -> None:
    """GetRecords renders a slice's shared parts once (the sequence numbers' leading digits,
    plain ASCII keys as they are); the JSON must be exactly what the record-by-record way
    writes: keys needing escapes, and counters that gain a digit inside a slice, included."""
    keys = ["k", 'quo"te', "back\\slash", "tab\there", "é", "\u2028", "~", " ", "!#[]"]
    with StreamStore.open(tmp_path) as store:
        store.ensure_stream("s", 1, 24)
        batches = ((0, 5, True), (5, 7, False), (12, 88, True), (100, 50, False))
        for start, count, plain in (*batches, (150, 850, True), (1000, 1, False)):
            store.put_columns(
                "s",
                [f"key{start + i}" if plain else keys[i % len(keys)] for i in range(count)],
                [bytes([i % 256]) * (i % 7) for i in range(count)],
            )
        table = admin.shard_table_of(store, "s", 0)
        rendered: list[str] = []
        expected: list[str] = []
        after = 0
        while True:
            page = admin.read_shard(store, table, after, 37, 10_000_000)
            if not page.slices:
                break
            rendered += records_json(page)
            expected += [r for piece in page.slices for r in _records_json_general(piece)]
            assert page.last is not None
            after = page.last
    assert len(rendered) == 1001
    assert rendered == expected
    records = [json.loads(r) for r in rendered]
    assert [r["SequenceNumber"] for r in records] == [format_sequence(c) for c in range(1, 1002)]
    assert [r["PartitionKey"] for r in records[4:7]] == ["key4", "k", 'quo"te']


def test_put_records_answers_the_sequence_numbers_get_records_reads(
    endpoint: KinesisEndpoint,
) -> None:
    """PutRecords renders its answers' sequence numbers from machine-size counters too: they
    must be the ones stored, across counters that gain a digit within a call and not."""
    kinesis = aws_client("kinesis", endpoint.url)
    kinesis.create_stream(StreamName="s", ShardCount=2)
    answered: dict[bytes, str] = {}
    for start, count in ((0, 5), (5, 500), (505, 500), (1005, 500)):
        entries = [{"Data": b"%d" % i, "PartitionKey": str(i)} for i in range(start, start + count)]
        answer = kinesis.put_records(StreamName="s", Records=entries)
        assert answer["FailedRecordCount"] == 0
        answered.update(
            (e["Data"], r["SequenceNumber"])
            for e, r in zip(entries, answer["Records"], strict=True)
        )
    assert sorted(answered.values(), key=int) == [format_sequence(c) for c in range(1, 1506)]
    read: dict[bytes, str] = {}
    for shard in ("shardId-000000000000", "shardId-000000000001"):
        it = kinesis.get_shard_iterator(
            StreamName="s", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        read.update(
            (r["Data"], r["SequenceNumber"])
            for r in kinesis.get_records(ShardIterator=it)["Records"]
        )
    assert read == answered
