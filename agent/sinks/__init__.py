"""The Sink protocol every destination implements, an in-memory sink for tests, and open_sink()."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agent.records import Checkpoint, Record

if TYPE_CHECKING:
    from agent.config import AgentConfig, FlowConfig
    from agent.observability.metrics import FlowMetrics


@dataclass(slots=True)
class SendResult:
    """What became of one send: records durably accepted, and records to send again (in order)."""

    delivered: list[Record] = field(default_factory=list)
    retry: list[Record] = field(default_factory=list)
    error: BaseException | None = None


class Sink(Protocol):
    """A destination.

    ``send`` gets a batch within the destination's limits and the checkpoints that become true
    once *every* record of the batch is delivered. A transactional sink (``transactional`` True,
    the embedded store) commits records and those checkpoints atomically; the others ignore them
    and the flow persists checkpoints after acknowledgement.
    """

    transactional: bool
    max_record_bytes: int
    max_batch_records: int
    max_batch_bytes: int

    async def send(
        self, records: Sequence[Record], checkpoints: Sequence[Checkpoint]
    ) -> SendResult: ...

    async def aclose(self) -> None: ...


class MemorySink:
    """Keeps everything it is sent, in order; can be told to fail the next sends (for tests)."""

    transactional = False

    def __init__(
        self,
        *,
        max_record_bytes: int = 1024 * 1024,
        max_batch_records: int = 500,
        max_batch_bytes: int = 5 * 1024 * 1024,
    ) -> None:
        self.max_record_bytes = max_record_bytes
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self.records: list[bytes] = []
        self.batches: list[list[bytes]] = []
        self.fail_next = 0
        self.closed = False

    async def send(
        self, records: Sequence[Record], checkpoints: Sequence[Checkpoint]
    ) -> SendResult:
        if self.fail_next:
            self.fail_next -= 1
            return SendResult(retry=list(records))
        batch = [r.data for r in records]
        self.batches.append(batch)
        self.records.extend(batch)
        return SendResult(delivered=list(records))

    async def aclose(self) -> None:
        self.closed = True


def open_sink(agent: AgentConfig, flow: FlowConfig, metrics: FlowMetrics | None = None) -> Sink:
    """Build the sink that a flow's destination key asks for."""
    if flow.local_stream is not None:
        from agent.sinks.local import LocalSink

        return LocalSink.open(agent, flow)
    if flow.kinesis_stream is not None:
        from agent.sinks.kinesis import KinesisSink

        return KinesisSink.open(agent, flow, metrics)
    if flow.delivery_stream is not None:
        from agent.sinks.firehose import FirehoseSink

        return FirehoseSink.open(agent, flow, metrics)
    raise AssertionError("config validation guarantees exactly one destination per flow")
