"""Kinesis Data Firehose sink: PutRecordBatch with per-entry acknowledgement.

Firehose concatenates record data into its objects as-is, so records keep their newline. With
``aggregatedRecordSizeBytes`` whole newline-terminated records are packed into one Firehose record
up to that size (fewer, larger records: cheaper, as with the AWS agent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agent.config.endpoints import normalize_endpoint
from agent.observability.metrics import FlowMetrics
from agent.records import Record
from agent.sinks.aws import AwsSink
from agent.sinks.kpl import Aggregate, newline_aggregate

if TYPE_CHECKING:
    from agent.config import AgentConfig, FlowConfig

MIB = 1024 * 1024
PUT_RECORD_BATCH_MAX_ENTRIES = 500
PUT_RECORD_BATCH_MAX_BYTES = 4 * MIB
FIREHOSE_MAX_RECORD_BYTES = 1_024_000  # 1,000 KiB
AGGREGATED_BATCH_RECORDS = 100_000


class FirehoseSink(AwsSink):
    """PutRecordBatch to one delivery stream; see AwsSink.send for the one-call-per-send contract."""

    api = "PutRecordBatch"
    max_call_entries = PUT_RECORD_BATCH_MAX_ENTRIES
    max_call_bytes = PUT_RECORD_BATCH_MAX_BYTES

    def __init__(
        self,
        client: Any,
        delivery_stream: str,
        *,
        aggregated_record_size: int = 0,
        metrics: FlowMetrics | None = None,
        connect: Callable[[], Any] | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(
            client, delivery_stream, metrics=metrics, connect=connect, endpoint=endpoint
        )
        self.aggregated_record_size = min(aggregated_record_size, FIREHOSE_MAX_RECORD_BYTES)
        self.packs_records = aggregated_record_size > 0
        # A newline may be added to a record when packing, so leave it a byte.
        self.max_record_bytes = FIREHOSE_MAX_RECORD_BYTES - (1 if aggregated_record_size else 0)
        self.max_batch_bytes = PUT_RECORD_BATCH_MAX_BYTES
        self.max_batch_records = (
            AGGREGATED_BATCH_RECORDS if aggregated_record_size else PUT_RECORD_BATCH_MAX_ENTRIES
        )

    @classmethod
    def open(
        cls, agent: AgentConfig, flow: FlowConfig, metrics: FlowMetrics | None = None
    ) -> FirehoseSink:
        assert flow.delivery_stream is not None
        size = flow.aggregated_record_size_bytes
        if flow.multi_line_start_pattern is not None:
            size = 0  # as the AWS agent: packing is off for multi-line records
        return cls(
            None,
            flow.delivery_stream,
            aggregated_record_size=size,
            metrics=metrics,
            connect=lambda: firehose_client(agent),
            endpoint=normalize_endpoint(agent.firehose_endpoint),
        )

    def entries(self, records: Sequence[Record], lane: int = 0) -> list[Aggregate]:
        if self.aggregated_record_size:
            return newline_aggregate(records, self.aggregated_record_size)
        return [Aggregate(r.data, [r], "", len(r.data), len(r.data)) for r in records]

    def call(self, entries: Sequence[Aggregate]) -> list[str | None]:
        response = self.client.put_record_batch(
            DeliveryStreamName=self.name, Records=[{"Data": e.data} for e in entries]
        )
        return [r.get("ErrorCode") or None for r in response.get("RequestResponses", ())]


def firehose_client(agent: AgentConfig) -> Any:
    """The sink's client (botocore loads here, at the first send: see agent/sinks/aws.py)."""
    from agent.awsclient import make_client

    return make_client(agent, "firehose")
