"""The Sink contract every destination implements, and an in-memory sink for tests.

The destinations themselves live beside it (local, kinesis, firehose); agent.sinks.factory picks
one from a flow's config, so this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agent.errors import AgentError
from agent.records import Checkpoint, Record, Span

if TYPE_CHECKING:
    from agent.observability.metrics import FlowMetrics


@dataclass(slots=True)
class SendResult:
    """What became of one send: records durably accepted, and records to send again (in order)."""

    delivered: list[Record] = field(default_factory=list)
    retry: list[Record] = field(default_factory=list)
    # Our error tree only (a sink translates foreign errors at its boundary): the sender's one
    # retryable rule reads ``error.retryable``.
    error: AgentError | None = None


class Sink(Protocol):
    """A destination: a ``RecordSink`` or a ``TransactionalSink`` (``transactional`` says which).

    A record sink's ``send`` gets a batch of records within the destination's limits, and
    hands back what it did not deliver, record by record, to send again. A transactional sink
    (the embedded store) takes a batch whole: ``commit`` gets spans (records read together,
    records.py; it needs no object per record) and the checkpoints that become true once every
    record of the batch is stored, and commits both atomically or neither; ``load_checkpoints``
    gives the checkpoints back. A record sink's ``load_checkpoints`` is empty: the flow keeps
    checkpoints in its checkpoint database after acknowledgement.

    Limits: a record is at most ``max_record_bytes`` (the reader cuts longer ones); a batch at
    most ``max_batch_records`` and ``max_batch_bytes`` — the flow's maxBufferSize* bound them too,
    unless the sink ``packs_records`` (KPL aggregation, Firehose packing: its requests are bound
    by its own limits, not the input's). One send carries at most ``max_send_records`` and
    ``max_send_bytes`` (several batches: a store group commit, Kinesis calls on parallel lanes);
    None means one batch per send.

    Counters, one writer each: a sink writes the counters of what it does into the
    ``FlowMetrics`` it was opened with (``metrics``; None counts nothing) — ``send_call`` (calls,
    records sent and failed, bytes), ``partition_key_fallbacks``, and ``records_truncated`` for
    the records it cuts to fit a long partition key. The sender writes the retry counters,
    status and in-flight gauges; it never writes the sink's.
    """

    transactional: bool
    packs_records: bool
    max_record_bytes: int
    max_batch_records: int
    max_batch_bytes: int
    max_send_records: int | None
    max_send_bytes: int | None
    metrics: FlowMetrics | None

    def load_checkpoints(self, flow_id: str) -> list[Checkpoint]: ...

    async def aclose(self) -> None: ...


class RecordSink(Sink, Protocol):
    """Kinesis, Firehose, the test sink: records one by one, each delivered or to retry."""

    async def send(
        self, records: Sequence[Record], checkpoints: Sequence[Checkpoint]
    ) -> SendResult: ...


class TransactionalSink(Sink, Protocol):
    """The embedded store: a batch of spans and its checkpoints, stored together or not at all."""

    async def commit(
        self, spans: Sequence[Span], checkpoints: Sequence[Checkpoint]
    ) -> AgentError | None:
        """None once stored; else the error (nothing of the batch or checkpoints is stored)."""


class MemorySink:
    """Keeps everything it is sent, in order; can be told to fail the next sends (for tests)."""

    transactional = False
    packs_records = False
    max_send_records: int | None = None
    max_send_bytes: int | None = None

    def __init__(
        self,
        *,
        max_record_bytes: int = 1024 * 1024,
        max_batch_records: int = 500,
        max_batch_bytes: int = 5 * 1024 * 1024,
        metrics: FlowMetrics | None = None,
    ) -> None:
        self.max_record_bytes = max_record_bytes
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self.metrics = metrics
        self.records: list[bytes] = []
        self.batches: list[list[bytes]] = []
        self.fail_next = 0
        self.closed = False

    async def send(
        self, records: Sequence[Record], checkpoints: Sequence[Checkpoint]
    ) -> SendResult:
        m = self.metrics
        if self.fail_next:
            self.fail_next -= 1
            if m is not None:
                m.send_call(
                    attempted=len(records),
                    sent=0,
                    sent_bytes=0,
                    failed=len(records),
                    service_error=False,
                )
            return SendResult(retry=list(records))
        batch = [r.data for r in records]
        self.batches.append(batch)
        self.records.extend(batch)
        if m is not None:
            m.send_call(
                attempted=len(records),
                sent=len(records),
                sent_bytes=sum(map(len, batch)),
                failed=0,
                service_error=False,
            )
        return SendResult(delivered=list(records))

    def load_checkpoints(self, flow_id: str) -> list[Checkpoint]:
        return []  # not transactional: checkpoints live in the checkpoint database

    async def aclose(self) -> None:
        self.closed = True
