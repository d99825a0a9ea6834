"""LocalSink: ships a flow into the embedded stream store, records and checkpoints in one commit.

The sink is transactional: a batch and the checkpoints that cover it are committed together or not
at all, so delivery into the store is exactly-once across ``kill -9``. Its limits are Kinesis's, so
a configuration behaves the same whether it ships here or to a real stream: a record and its
partition key take at most 1 MiB together, and an over-size record is cut as the Kinesis sink cuts
it (agent/sinks/kinesis.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.errors import StoreError, StreamNotFound
from agent.records import Checkpoint, Span
from agent.sinks.partition import PartitionKeys, random_keys
from agent.store import StreamStore

if TYPE_CHECKING:
    from agent.config import AgentConfig, FlowConfig
    from agent.observability.metrics import FlowMetrics

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# The store commits every batch that is ready in one transaction, up to these limits: the
# 500-record cap is Kinesis's API limit, and a commit has a fixed cost.
GROUP_COMMIT_RECORDS = 50_000
GROUP_COMMIT_BYTES = 4 * 1024 * 1024


class LocalSink:
    """One flow's connection to the store directory; several sinks may share a directory."""

    transactional = True
    packs_records = False
    max_batch_records = 500
    max_batch_bytes = 5 * MIB
    max_send_records: int | None = GROUP_COMMIT_RECORDS
    max_send_bytes: int | None = GROUP_COMMIT_BYTES

    def __init__(
        self,
        store: StreamStore,
        stream: str,
        keys: PartitionKeys,
        terminator: bytes = b"\n",
        *,
        shard_count: int = 4,
        retention_hours: int = 24,
        metrics: FlowMetrics | None = None,
        batch_records: int = 500,
    ) -> None:
        self.store = store
        self.stream = stream
        self.shard_count = shard_count  # what the stream is made with, at start and if deleted
        self.retention_hours = retention_hours
        self.keys = keys
        self.terminator = terminator
        # the reader cuts records to fit beside a key of known length; a FIELD key is cut for here
        self.max_record_bytes = MIB - keys.key_bytes_known_before
        self.metrics = metrics
        # the batches a group commit carries, as the operator configured them (maxBufferSizeRecords)
        self.batch_records = batch_records
        self._fallbacks_seen = 0
        self._closed = False

    @classmethod
    def open(
        cls, agent: AgentConfig, flow: FlowConfig, metrics: FlowMetrics | None = None
    ) -> LocalSink:
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
        return cls(
            store,
            flow.local_stream,
            keys,
            flow.truncated_record_terminator.encode(),
            shard_count=agent.local_store_shard_count,
            retention_hours=agent.local_store_retention_hours,
            metrics=metrics,
            batch_records=min(flow.max_buffer_size_records, cls.max_batch_records),
        )

    def __repr__(self) -> str:
        return f"LocalSink({self.stream!r} in {str(self.store.directory)!r})"

    async def commit(
        self, spans: Sequence[Span], checkpoints: Sequence[Checkpoint]
    ) -> StoreError | None:
        """Store the whole batch and the checkpoints, or nothing (then all of it is to retry)."""
        datas = [data for span in spans for data in span.datas]
        if self._closed:
            error = StoreError(f"{self!r} is closed")
            self._count_calls(datas, error)
            return error
        # Keys are made at each attempt: RANDOM ones are drawn again if a put fails (nothing of
        # it is stored), DETERMINISTIC and FIELD ones are the same every time; a failed attempt's
        # key fallbacks are not counted (they are counted again when the batch is stored).
        fallbacks = self.keys.fallbacks
        keys = self._keys(datas)
        stored = datas
        cut = 0
        if self.keys.option == "FIELD":
            stored = list(datas)
            cut = self._fit(stored, keys)
        try:
            # The worker thread finishes its commit even if this task is cancelled; the
            # checkpoints committed with it keep a restart from sending the batch again.
            await asyncio.to_thread(self._put, keys, stored, checkpoints)
        except StoreError as exc:
            self.keys.fallbacks = fallbacks
            self._count_calls(datas, exc)
            return exc
        self._count_calls(stored, None)  # the bytes stored: after a long key's cut
        self._count_keys(cut)
        return None

    def _count_calls(self, datas: list[bytes], error: StoreError | None) -> None:
        """Record the commit as calls: one per batch it carries, all delivered or all failed.

        The store commits every ready batch at once, but the operator configured (and the
        metrics describe) batches of ``maxBufferSizeRecords``: each one counts as a send.
        A commit of checkpoints alone is no send.
        """
        m = self.metrics
        if m is None or not datas:
            return
        size = self.batch_records
        delivered = error is None
        for i in range(0, len(datas), size):
            part = datas[i : i + size]
            m.send_call(
                attempted=len(part),
                sent=len(part) if delivered else 0,
                sent_bytes=sum(map(len, part)) if delivered else 0,
                failed=0 if delivered else len(part),
                service_error=error is not None,
            )

    def _count_keys(self, cut: int) -> None:
        """Key fallbacks and records a long FIELD key made us cut: counted by increments, so a
        counter carried over a reload only grows."""
        m = self.metrics
        if m is not None:
            m.partition_key_fallbacks += self.keys.fallbacks - self._fallbacks_seen
            m.records_truncated += cut
        self._fallbacks_seen = self.keys.fallbacks
        if cut:
            log.warning(
                "%s: %d record(s) with a long partition key were over the 1 MiB limit; cut to "
                "fit, ending with the truncation terminator",
                self,
                cut,
            )

    def _put(self, keys: list[str], datas: list[bytes], checkpoints: Sequence[Checkpoint]) -> None:
        try:
            self.store.put_columns(self.stream, keys, datas, checkpoints)
            return
        except StoreError:
            # The put rolled back. A stream deleted under us (DeleteStream through the Kinesis
            # endpoint) is made again, as at start; anything else is retried by the sender.
            try:
                self.store.describe(self.stream)
            except StreamNotFound:
                pass
            else:
                raise
        log.warning(
            "stream %s was deleted from %s; creating it again for %s",
            self.stream,
            self.store.directory,
            self,
        )
        self.store.ensure_stream(self.stream, self.shard_count, self.retention_hours)
        self.store.put_columns(self.stream, keys, datas, checkpoints)

    def _fit(self, datas: list[bytes], keys: list[str]) -> int:
        """Cut (in ``datas``, not the records) what a long key pushes over 1 MiB; how many."""
        cut = 0
        for i, (data, key) in enumerate(zip(datas, keys, strict=True)):
            kb = len(key.encode())
            if len(data) + kb > MIB:
                datas[i] = data[: MIB - kb - len(self.terminator)] + self.terminator
                cut += 1
        return cut

    def _keys(self, datas: list[bytes]) -> list[str]:
        """The records' partition keys, by the flow's partitionKeyOption."""
        if self.keys.option == "RANDOM":
            return random_keys(len(datas))
        return list(map(self.keys.key_for, datas))

    def load_checkpoints(self, flow_id: str) -> list[Checkpoint]:
        """The checkpoints a flow committed into this store with its records (blocking)."""
        return self.store.load_checkpoints(flow_id)

    async def aclose(self) -> None:
        """Close the store connection after a send in progress; closing twice is fine."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self.store.close)
