"""KPL aggregation checked against an independent reader (the aws-kinesis-agg package), and packing."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.records import Record
from agent.sinks.kpl import (
    KINESIS_MAX_RECORD_BYTES,
    KPL_MAGIC,
    KPL_PER_RECORD_RESERVE,
    kpl_aggregate,
    newline_aggregate,
    varint,
    varint_len,
)
from tests.peers.helpers import deaggregate as peers_deaggregate


def deaggregate(aggregates: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """What a KCL consumer sees: (partition key, data) of every user record, via aws-kinesis-agg."""
    out = []
    for user in peers_deaggregate(aggregates):
        k = user["kinesis"]
        assert k.get("aggregated") is True, "aws-kinesis-agg did not recognise the aggregate"
        out.append((k["partitionKey"], base64.b64decode(k["data"])))
    return out


def recs(*datas: bytes) -> list[Record]:
    return [Record(d, None, 0, len(d)) for d in datas]


def md5_key(r: Record) -> str:
    return hashlib.md5(r.data).hexdigest()


class TestVarint:
    @given(st.integers(min_value=0, max_value=2**64 - 1))
    def test_length_matches_encoding(self, n: int) -> None:
        """The size estimate used for packing equals the encoded size."""
        assert varint_len(n) == len(varint(n))

    def test_known_values(self) -> None:
        """The protobuf spec's examples."""
        assert varint(1) == b"\x01"
        assert varint(300) == b"\xac\x02"


class TestKplAggregate:
    def test_round_trips_through_aws_kinesis_agg(self) -> None:
        """Per-record keys and data come back exactly, in order."""
        batch = recs(b"alpha\n", b"", b"\x00\xffbinary", b"x" * 300, b"alpha\n")
        aggs = kpl_aggregate(batch, md5_key)
        assert len(aggs) == 1
        assert aggs[0].data.startswith(KPL_MAGIC)
        assert aggs[0].records == batch
        got = deaggregate([(a.partition_key, a.data) for a in aggs])
        assert got == [(md5_key(r), r.data) for r in batch]

    def test_shared_random_key(self) -> None:
        """With RANDOM keys every user record carries its aggregate's one key."""
        keys = iter(["k1", "k2"])
        aggs = kpl_aggregate(recs(b"a", b"b", b"c"), md5_key, shared_key=lambda: next(keys))
        assert [a.partition_key for a in aggs] == ["k1"]
        assert deaggregate([(a.partition_key, a.data) for a in aggs]) == [
            ("k1", b"a"),
            ("k1", b"b"),
            ("k1", b"c"),
        ]

    def test_splits_at_the_one_mib_record_limit(self) -> None:
        """Aggregates plus their key stay within 1 MiB; every user record is in exactly one."""
        rng = random.Random(7)
        batch = recs(*(rng.randbytes(rng.randrange(1, 40_000)) for _ in range(200)))
        aggs = kpl_aggregate(batch, md5_key)
        assert len(aggs) > 1
        for a in aggs:
            assert len(a.data) + len(a.partition_key.encode()) <= KINESIS_MAX_RECORD_BYTES
        assert [r for a in aggs for r in a.records] == batch
        got = deaggregate([(a.partition_key, a.data) for a in aggs])
        assert [d for _, d in got] == [r.data for r in batch]

    def test_packs_tightly(self) -> None:
        """Splitting happens only when the next record would not fit."""
        batch = recs(*(b"y" * 1000 for _ in range(3000)))
        aggs = kpl_aggregate(batch, lambda r: "k")
        for a, nxt in itertools.pairwise(aggs):
            assert len(a.data) + 1 + 1008 > KINESIS_MAX_RECORD_BYTES - len(nxt.partition_key)

    def test_largest_allowed_record_fits_alone(self) -> None:
        """A record of max_record_bytes with a 256-char key is still one valid Kinesis record."""
        data = b"z" * (KINESIS_MAX_RECORD_BYTES - KPL_PER_RECORD_RESERVE)
        key = "k" * 256
        for batch in (recs(data), recs(b"small" * 100, data, b"more" * 100)):
            aggs = kpl_aggregate(batch, lambda r: key)
            assert all(len(a.data) + len(key) <= KINESIS_MAX_RECORD_BYTES for a in aggs)
            got = deaggregate([(a.partition_key, a.data) for a in aggs])
            assert got == [(key, r.data) for r in batch]

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(
            st.one_of(st.binary(max_size=300), st.binary(min_size=16_000, max_size=20_000)),
            min_size=1,
            max_size=60,
        ),
        st.integers(2000, 60_000),
    )
    def test_shared_key_bytes_equal_one_key_table(self, datas: list[bytes], limit: int) -> None:
        """The shared-key fast path makes byte for byte what the general path makes for one key."""
        batch = recs(*datas)
        general = kpl_aggregate(batch, lambda r: "k" * 12, max_bytes=limit)
        shared = kpl_aggregate(batch, md5_key, max_bytes=limit, shared_key=lambda: "k" * 12)
        assert [(a.data, a.records, a.partition_key, a.user_bytes, a.size) for a in shared] == [
            (a.data, a.records, a.partition_key, a.user_bytes, a.size) for a in general
        ]

    def test_shared_key_splits_with_a_fresh_key_each(self) -> None:
        """Every aggregate of a long batch takes its own key and stays within 1 MiB."""
        keys = (f"key{i}" for i in itertools.count())
        batch = recs(*(b"%06d" % i * 30 for i in range(20_000)))
        aggs = kpl_aggregate(batch, md5_key, shared_key=lambda: next(keys))
        assert [a.partition_key for a in aggs] == [f"key{i}" for i in range(len(aggs))]
        assert len(aggs) > 2
        for a in aggs:
            assert len(a.data) + len(a.partition_key) <= KINESIS_MAX_RECORD_BYTES
        got = deaggregate([(a.partition_key, a.data) for a in aggs])
        assert got == [(a.partition_key, r.data) for a in aggs for r in a.records]
        assert [r for a in aggs for r in a.records] == batch

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.binary(max_size=3000), min_size=1, max_size=400), st.integers(2000, 60_000))
    def test_any_batch_round_trips(self, datas: list[bytes], limit: int) -> None:
        """Whatever the records and the limit, deaggregation gives back exactly the originals."""
        batch = recs(*datas)
        aggs = kpl_aggregate(batch, md5_key, max_bytes=limit)
        for a in aggs:
            assert len(a.records) == 1 or len(a.data) + len(a.partition_key) <= limit
        got = deaggregate([(a.partition_key, a.data) for a in aggs])
        assert got == [(md5_key(r), r.data) for r in batch]


class TestNewlineAggregate:
    def test_packs_whole_lines_up_to_the_size(self) -> None:
        """Records are never split and each aggregate stays within the size."""
        batch = recs(*(b"line %03d\n" % i for i in range(100)))
        aggs = newline_aggregate(batch, 100)
        assert all(len(a.data) <= 100 for a in aggs)
        assert b"".join(a.data for a in aggs) == b"".join(r.data for r in batch)
        assert [r for a in aggs for r in a.records] == batch
        assert all(a.data.endswith(b"\n") for a in aggs)

    def test_adds_a_missing_newline(self) -> None:
        """Records without a final newline do not run together."""
        aggs = newline_aggregate(recs(b"a", b"b\n", b"c"), 1000)
        assert [a.data for a in aggs] == [b"a\nb\nc\n"]

    def test_oversized_record_goes_alone(self) -> None:
        """A record longer than the size is sent by itself, not dropped or cut."""
        aggs = newline_aggregate(recs(b"a\n", b"x" * 50 + b"\n", b"b\n"), 10)
        assert [a.data for a in aggs] == [b"a\n", b"x" * 50 + b"\n", b"b\n"]
