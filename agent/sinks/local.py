"""LocalSink: ships a flow into the embedded stream store, records and checkpoints in one commit.

The sink is transactional: a batch and the checkpoints that cover it are committed together or not
at all, so delivery into the store is exactly-once across ``kill -9``. Its limits are Kinesis's, so
a configuration behaves the same whether it ships here or to a real stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.errors import StoreError
from agent.records import Checkpoint, Record
from agent.sinks import SendResult
from agent.sinks.partition import PartitionKeys
from agent.store import StreamStore

if TYPE_CHECKING:
    from agent.config import AgentConfig, FlowConfig

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class LocalSink:
    """One flow's connection to the store directory; several sinks may share a directory."""

    transactional = True
    max_record_bytes = MIB
    max_batch_records = 500
    max_batch_bytes = 5 * MIB

    def __init__(self, store: StreamStore, stream: str, keys: PartitionKeys) -> None:
        self.store = store
        self.stream = stream
        self.keys = keys
        self._closed = False

    @classmethod
    def open(cls, agent: AgentConfig, flow: FlowConfig) -> LocalSink:
        """Open the store of ``localStore.directory`` and create the flow's stream if missing."""
        assert flow.local_stream is not None
        store = StreamStore.open(agent.local_store_directory)
        try:
            store.ensure_stream(
                flow.local_stream,
                agent.local_store_shard_count,
                agent.local_store_retention_hours,
            )
        except BaseException:
            store.close()
            raise
        keys = PartitionKeys(flow.partition_key_option, flow.partition_key_field)
        return cls(store, flow.local_stream, keys)

    def __repr__(self) -> str:
        return f"LocalSink({self.stream!r} in {str(self.store.directory)!r})"

    async def send(
        self, records: Sequence[Record], checkpoints: Sequence[Checkpoint]
    ) -> SendResult:
        """Store the whole batch and the checkpoints, or nothing (then all of it is to retry)."""
        if self._closed:
            error = StoreError(f"{self!r} is closed")
            return SendResult(retry=list(records), error=error)
        key_for = self.keys.key_for
        entries = []
        for record in records:
            if record.partition_key is None:
                record.partition_key = key_for(record.data)
            entries.append((record.partition_key, record.data))
        try:
            # The worker thread finishes its commit even if this task is cancelled; the
            # checkpoints committed with it keep a restart from sending the batch again.
            await asyncio.to_thread(self.store.put_records, self.stream, entries, checkpoints)
        except StoreError as exc:
            return SendResult(retry=list(records), error=exc)
        return SendResult(delivered=list(records))

    def load_checkpoints(self, flow_id: str) -> list[Checkpoint]:
        """The checkpoints a flow committed into this store with its records (blocking)."""
        return self.store.load_checkpoints(flow_id)

    async def aclose(self) -> None:
        """Close the store connection after a send in progress; closing twice is fine."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self.store.close)
