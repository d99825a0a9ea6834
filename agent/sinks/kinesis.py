"""Kinesis Data Streams sink: PutRecords with per-entry acknowledgement and optional KPL aggregation.

A record keeps the partition key it was first given, so a resent record lands in the same shard
and stays behind its predecessors there. With ``aggregateRecords`` the batch is packed into KPL
aggregated records (agent/sinks/kpl.py) and an accepted aggregate acknowledges all it carries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent.metrics import FlowMetrics
from agent.records import Record
from agent.sinks.aws import AwsSink, make_client
from agent.sinks.kpl import (
    KINESIS_MAX_RECORD_BYTES,
    KPL_PER_RECORD_RESERVE,
    Aggregate,
    kpl_aggregate,
)
from agent.sinks.partition import MAX_KEY_CHARS, PartitionKeys

if TYPE_CHECKING:
    from agent.config import AgentConfig, FlowConfig

MIB = 1024 * 1024
PUT_RECORDS_MAX_ENTRIES = 500
PUT_RECORDS_MAX_BYTES = 5 * MIB  # data + partition keys of all entries
# Batches of user records under aggregation: bytes bounded so that the aggregates' framing still
# fits one PutRecords call for all but the tiniest records; the count only guards memory.
AGGREGATED_BATCH_BYTES = 4 * MIB
AGGREGATED_BATCH_RECORDS = 100_000


class KinesisSink(AwsSink):
    """PutRecords to one stream; see AwsSink.send for the one-call-per-send contract."""

    api = "PutRecords"
    max_call_entries = PUT_RECORDS_MAX_ENTRIES
    max_call_bytes = PUT_RECORDS_MAX_BYTES

    def __init__(
        self,
        client: Any,
        stream: str,
        *,
        keys: PartitionKeys | None = None,
        aggregate: bool = False,
        metrics: FlowMetrics | None = None,
    ) -> None:
        super().__init__(client, stream, metrics=metrics)
        self.keys = keys or PartitionKeys("RANDOM")
        self.aggregate = aggregate
        self.packs_records = aggregate  # the flow batches by our limits, not maxBufferSize*
        self._fallbacks_seen = 0
        if aggregate:
            self.max_record_bytes = KINESIS_MAX_RECORD_BYTES - KPL_PER_RECORD_RESERVE
            self.max_batch_records = AGGREGATED_BATCH_RECORDS
            self.max_batch_bytes = AGGREGATED_BATCH_BYTES
        else:
            # Room for the longest key (256 chars) inside the 1 MiB that data + key may take.
            self.max_record_bytes = KINESIS_MAX_RECORD_BYTES - MAX_KEY_CHARS
            self.max_batch_records = PUT_RECORDS_MAX_ENTRIES
            self.max_batch_bytes = PUT_RECORDS_MAX_BYTES

    @classmethod
    def open(
        cls, agent: AgentConfig, flow: FlowConfig, metrics: FlowMetrics | None = None
    ) -> KinesisSink:
        assert flow.kinesis_stream is not None
        return cls(
            make_client(agent, "kinesis"),
            flow.kinesis_stream,
            keys=PartitionKeys(flow.partition_key_option, flow.partition_key_field),
            aggregate=flow.aggregate_records,
            metrics=metrics,
        )

    def key_of(self, record: Record) -> str:
        """The record's partition key, made once and kept for every resend."""
        key = record.partition_key
        if key is None:
            key = record.partition_key = self.keys.key_for(record.data)
        return key

    def entries(self, records: Sequence[Record]) -> list[Aggregate]:
        if self.aggregate:
            shared = self._random_key if self.keys.option == "RANDOM" else None
            out = kpl_aggregate(records, self.key_of, shared_key=shared)
        else:
            out = []
            append = out.append
            key_for = self.keys.key_for
            for record in records:
                data = record.data
                key = record.partition_key
                if key is None:
                    key = record.partition_key = key_for(data)
                n = len(data)
                size = n + (len(key) if key.isascii() else len(key.encode()))
                if size > KINESIS_MAX_RECORD_BYTES:
                    # A long FIELD key must not make a full-size record unsendable.
                    key = record.partition_key = hashlib.md5(data).hexdigest()
                    size = n + len(key)
                append(Aggregate(data, [record], key, n, size))
        self._count_fallbacks()
        return out

    def _random_key(self) -> str:
        return self.keys.key_for(b"")

    def _count_fallbacks(self) -> None:
        if self.metrics is not None and self.keys.fallbacks != self._fallbacks_seen:
            self.metrics.partition_key_fallbacks += self.keys.fallbacks - self._fallbacks_seen
        self._fallbacks_seen = self.keys.fallbacks

    def call(self, entries: Sequence[Aggregate]) -> list[str | None]:
        response = self.client.put_records(
            StreamName=self.name,
            Records=[{"Data": e.data, "PartitionKey": e.partition_key} for e in entries],
        )
        return [r.get("ErrorCode") or None for r in response.get("Records", ())]
