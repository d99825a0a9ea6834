"""Kinesis sizing from known rates: shards by bytes and records, PUT units, aggregation savings."""

from __future__ import annotations

import pytest

from agent.observability.capacity import PUT_UNIT_BYTES, SHARD_BYTES_PER_S, kinesis_capacity


class TestKinesisCapacity:
    def test_bytes_and_records_limits(self) -> None:
        """2,500 records/s of 1,000 bytes: 3 shards by either limit, one PUT unit a record."""
        cap = kinesis_capacity(2500, 2_500_000)
        assert (cap.shards_by_bytes, cap.shards_by_records, cap.shards) == (3, 3, 3)
        assert cap.put_units_per_s == 2500
        # 25 records of 1,008 packed bytes fit one 25 KiB aggregate: 100 aggregates/s
        assert cap.aggregated_records_per_s == 100
        assert cap.aggregated_put_units_per_s == 100
        assert cap.aggregated_shards == 3  # bytes still need three shards
        assert cap.put_units_saved_percent == pytest.approx(96.0)

    def test_small_records_hit_the_record_limit(self) -> None:
        """5,000 records/s of 100 bytes: 5 shards by records, 1 by bytes; aggregation needs 1."""
        cap = kinesis_capacity(5000, 500_000)
        assert (cap.shards_by_bytes, cap.shards_by_records, cap.shards) == (1, 5, 5)
        assert cap.put_units_per_s == 5000
        per_aggregate = (PUT_UNIT_BYTES - 20) // (100 + 8)  # 236 records
        assert cap.aggregated_records_per_s == -(-5000 // per_aggregate) == 22
        assert cap.aggregated_shards == 1
        assert cap.aggregated_put_units_per_s == 22

    def test_large_records_cost_several_units_and_gain_nothing(self) -> None:
        """50,000-byte records take two PUT units each and cannot be packed in pairs."""
        cap = kinesis_capacity(100, 5_000_000)
        assert cap.shards == cap.shards_by_bytes == 5
        assert cap.put_units_per_s == 200
        assert cap.aggregated_put_units_per_s == 200
        assert cap.put_units_saved_percent == 0

    def test_exactly_at_the_limit(self) -> None:
        """1 MiB/s and 1,000 records/s fit one shard exactly."""
        cap = kinesis_capacity(1000, SHARD_BYTES_PER_S)
        assert cap.shards == 1

    def test_partition_keys_count_against_bytes(self) -> None:
        """Keys add to the bytes limit: 1,000 records of 1,000 bytes plus 100-byte keys need 2."""
        assert kinesis_capacity(1000, 1_000_000).shards == 1
        assert kinesis_capacity(1000, 1_000_000, key_bytes=100).shards_by_bytes == 2

    def test_idle_flow_needs_one_shard(self) -> None:
        """No traffic: the minimum of one shard, zero units."""
        cap = kinesis_capacity(0, 0)
        assert cap.shards == 1 and cap.put_units_per_s == 0 and cap.put_units_saved_percent == 0

    def test_summary_reads_like_advice(self) -> None:
        """The one-line summary names shards, units and the aggregation saving."""
        text = kinesis_capacity(2500, 2_500_000).summary()
        assert text == (
            "3 shard(s) (by bytes 3, by records 3), 2500 PUT units/s; aggregateRecords: "
            "3 shard(s), 100 PUT units/s (96% fewer)"
        )
