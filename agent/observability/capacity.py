"""Kinesis sizing from observed rates: shards, PUT payload units, and what aggregation would save.

The arithmetic operators otherwise do by hand, as a pure function. Per-shard write limits are
1 MiB/s (data plus partition keys) and 1,000 records/s; a PUT payload unit is each started 25 KiB of
a record. With KPL aggregation many user records travel in one Kinesis record, so the record limit
stops mattering and PUT units are counted on the packed size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

SHARD_BYTES_PER_S = 1024 * 1024
SHARD_RECORDS_PER_S = 1000
PUT_UNIT_BYTES = 25 * 1024
# KPL framing per user record (protobuf tag, lengths, partition key index) and per aggregate
# (4-byte magic + 16-byte MD5 trailer), close enough for sizing.
KPL_RECORD_OVERHEAD = 8
KPL_AGGREGATE_OVERHEAD = 20
DEFAULT_AGGREGATE_BYTES = PUT_UNIT_BYTES  # packing to one PUT unit is the cheapest fill


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a Kinesis stream needs for a flow's write rate, plain and aggregated."""

    records_per_s: float
    bytes_per_s: float
    shards_by_bytes: int
    shards_by_records: int
    shards: int
    put_units_per_s: int
    aggregated_records_per_s: int
    aggregated_shards: int
    aggregated_put_units_per_s: int
    put_units_saved_percent: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        text = (
            f"{self.shards} shard(s) (by bytes {self.shards_by_bytes}, by records "
            f"{self.shards_by_records}), {self.put_units_per_s} PUT units/s"
        )
        if self.put_units_saved_percent > 0:
            text += (
                f"; aggregateRecords: {self.aggregated_shards} shard(s), "
                f"{self.aggregated_put_units_per_s} PUT units/s "
                f"({self.put_units_saved_percent:.0f}% fewer)"
            )
        return text


def kinesis_capacity(
    records_per_s: float,
    bytes_per_s: float,
    *,
    key_bytes: int = 0,
    aggregate_bytes: int = DEFAULT_AGGREGATE_BYTES,
) -> Capacity:
    """Sizing for ``records_per_s`` records of ``bytes_per_s`` data bytes in total, per second.

    ``key_bytes`` is the partition key length of one record (it counts against the byte limit).
    PUT units assume records of the average size; at least one unit per record.
    """
    records_per_s = max(0.0, records_per_s)
    bytes_per_s = max(0.0, bytes_per_s)
    wire = bytes_per_s + records_per_s * key_bytes
    by_bytes = math.ceil(wire / SHARD_BYTES_PER_S)
    by_records = math.ceil(records_per_s / SHARD_RECORDS_PER_S)
    shards = max(1, by_bytes, by_records)
    average = (wire / records_per_s) if records_per_s else 0.0
    units_per_record = max(1, math.ceil(average / PUT_UNIT_BYTES)) if records_per_s else 0
    put_units = math.ceil(records_per_s * units_per_record - 1e-9)

    # Aggregation packs whole user records of the average size into aggregates of at most
    # ``aggregate_bytes``; a record that does not fit twice gains nothing from it.
    data_average = bytes_per_s / records_per_s if records_per_s else 0.0
    room = aggregate_bytes - KPL_AGGREGATE_OVERHEAD - key_bytes
    per_aggregate = int(room // (data_average + KPL_RECORD_OVERHEAD)) if records_per_s else 0
    if per_aggregate >= 2:
        aggregates = math.ceil(records_per_s / per_aggregate - 1e-9)
        size = per_aggregate * (data_average + KPL_RECORD_OVERHEAD) + KPL_AGGREGATE_OVERHEAD
        agg_wire = aggregates * (size + key_bytes)
        agg_units = aggregates * max(1, math.ceil((size + key_bytes) / PUT_UNIT_BYTES))
        agg_shards = max(
            1,
            math.ceil(agg_wire / SHARD_BYTES_PER_S),
            math.ceil(aggregates / SHARD_RECORDS_PER_S),
        )
    else:
        aggregates, agg_units, agg_shards = math.ceil(records_per_s - 1e-9), put_units, shards
    saved = 100.0 * (put_units - agg_units) / put_units if put_units else 0.0
    return Capacity(
        records_per_s=records_per_s,
        bytes_per_s=bytes_per_s,
        shards_by_bytes=by_bytes,
        shards_by_records=by_records,
        shards=shards,
        put_units_per_s=put_units,
        aggregated_records_per_s=aggregates,
        aggregated_shards=agg_shards,
        aggregated_put_units_per_s=agg_units,
        put_units_saved_percent=saved,
    )
