"""Kinesis Data Streams sink: PutRecords with per-entry acknowledgement and optional KPL aggregation.

A record keeps the partition key it was first given, so a resent record lands in the same shard
and stays behind its predecessors there. With ``aggregateRecords`` the batch is packed into KPL
aggregated records (agent/sinks/kpl.py) and an accepted aggregate acknowledges all it carries.

Record size: Kinesis takes data plus partition key up to 1 MiB. An over-size record is cut so that
the two together are exactly 1,048,576 bytes, ending with ``truncatedRecordTerminator``. Where the
key's length is known before the record is keyed (RANDOM pool keys, DETERMINISTIC's MD5), the
reader cuts it so (``max_record_bytes``); a FIELD key is only known here, so a record it pushes
over the limit is cut here, keeping the key the user asked for. Under aggregation a user record too
big to share an aggregate goes as a plain Kinesis record (as the KPL sends it; KCL and
``aws-kinesis-agg`` pass plain records through), so aggregation never shortens a record.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agent.config.endpoints import normalize_endpoint
from agent.observability.metrics import FlowMetrics
from agent.records import Record
from agent.sinks.aws import AwsSink
from agent.sinks.kpl import (
    KINESIS_MAX_RECORD_BYTES,
    KPL_PER_RECORD_RESERVE,
    Aggregate,
    kpl_aggregate,
)
from agent.sinks.partition import KEY_POOL_SIZE, PartitionKeys, random_keys
from agent.sinks.shards import ShardMap, list_open_shards

if TYPE_CHECKING:
    from agent.config import AgentConfig, FlowConfig

log = logging.getLogger(__name__)

MIB = 1024 * 1024
PUT_RECORDS_MAX_ENTRIES = 500
PUT_RECORDS_MAX_BYTES = 5 * MIB  # data + partition keys of all entries
# Batches of user records under aggregation: bytes bounded so that the aggregates' framing still
# fits one PutRecords call for all but the tiniest records; the count only guards memory.
AGGREGATED_BATCH_BYTES = 4 * MIB
AGGREGATED_BATCH_RECORDS = 100_000
# Calls in flight at once, each on its own lane of shards (agent/sinks/shards.py). Two keep a
# single-threaded service busy while the other call is built or answered; the ~20-40 ms a call
# spends at real Kinesis would want more, at one connection and one worker thread each.
SEND_LANES = 2
# How much one send may carry when the flow has that much ready: enough calls for every lane to
# have its next call built while its current one is at the service.
SEND_CALLS = 2 * SEND_LANES
# Aggregated calls are few and big (~4 MiB each): the service spends long on each, and while the
# next send is being packed it has only what is still in flight. More lanes keep it fed.
AGGREGATED_SEND_LANES = 4
# A user record bigger than this cannot share an aggregate with a 256-character key: it goes plain.
AGGREGATE_MAX_USER_BYTES = KINESIS_MAX_RECORD_BYTES - KPL_PER_RECORD_RESERVE
# After ListShards is refused (the AWS agent's IAM policy has only PutRecords): one lane, and ask
# again after this long.
SHARD_MAP_RETRY_SECONDS = 600.0


class KinesisSink(AwsSink):
    """PutRecords to one stream, several calls in flight on disjoint shards (see the lane counts)."""

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
        lanes: int | None = None,
        terminator: bytes = b"\n",
        connect: Callable[[], Any] | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(client, stream, metrics=metrics, connect=connect, endpoint=endpoint)
        self.keys = keys or PartitionKeys("RANDOM")
        self.terminator = terminator
        self._last_cut_log = float("-inf")
        self.aggregate = aggregate
        self.packs_records = aggregate  # the flow batches by our limits, not maxBufferSize*
        if lanes is None:
            lanes = AGGREGATED_SEND_LANES if aggregate else SEND_LANES
        self.max_lanes = lanes
        self._fallbacks_seen = 0
        self._map: ShardMap | None = None
        self._map_stale = False
        self._map_retry_at = float("-inf")
        self._lane_keys: list[list[str]] = []
        self.max_record_bytes = KINESIS_MAX_RECORD_BYTES - self.keys.key_bytes_known_before
        if aggregate:
            self.max_batch_records = AGGREGATED_BATCH_RECORDS
            self.max_batch_bytes = AGGREGATED_BATCH_BYTES
            self.max_send_records = lanes * AGGREGATED_BATCH_RECORDS
            self.max_send_bytes = lanes * AGGREGATED_BATCH_BYTES
        else:
            self.max_batch_records = PUT_RECORDS_MAX_ENTRIES
            self.max_batch_bytes = PUT_RECORDS_MAX_BYTES
            self.max_send_records = SEND_CALLS * PUT_RECORDS_MAX_ENTRIES
            self.max_send_bytes = SEND_CALLS * PUT_RECORDS_MAX_BYTES // 2
        if lanes <= 1:  # one call at a time: sends as the flow batches them
            self.max_send_records = self.max_batch_records
            self.max_send_bytes = self.max_batch_bytes

    @classmethod
    def open(
        cls, agent: AgentConfig, flow: FlowConfig, metrics: FlowMetrics | None = None
    ) -> KinesisSink:
        assert flow.kinesis_stream is not None
        sink = cls(
            None,
            flow.kinesis_stream,
            connect=lambda: kinesis_client(agent),
            endpoint=normalize_endpoint(agent.kinesis_endpoint),
            keys=PartitionKeys(flow.partition_key_option, flow.partition_key_field),
            aggregate=flow.aggregate_records,
            metrics=metrics,
            terminator=flow.truncated_record_terminator.encode(),
        )
        if not flow.aggregate_records:
            # A send may carry several batches; each call stays within the flow's batch limits.
            sink.max_call_entries = min(PUT_RECORDS_MAX_ENTRIES, flow.max_buffer_size_records)
            sink.max_call_bytes = min(PUT_RECORDS_MAX_BYTES, flow.max_buffer_size_bytes)
        return sink

    def key_of(self, record: Record) -> str:
        """The record's partition key, made once and kept for every resend."""
        key = record.partition_key
        if key is None:
            key = record.partition_key = self.keys.key_for(record.data)
        return key

    # --- lanes ------------------------------------------------------------------------------------

    async def shard_map(self) -> ShardMap | None:
        """The stream's shard map, loaded on first need and again when a call found it stale."""
        if self._map is not None and not self._map_stale:
            return self._map
        now = time.monotonic()
        if now < self._map_retry_at:
            return None
        self._map_stale = False
        try:
            shards = await asyncio.to_thread(lambda: list_open_shards(self.client, self.name))
            smap = ShardMap(shards, self.max_lanes)
        except Exception as exc:
            if self._map is None:
                log.info(
                    "%s: ListShards failed (%s): one PutRecords call at a time", self.name, exc
                )
            self._map = None
            self._map_retry_at = now + SHARD_MAP_RETRY_SECONDS
            return None
        self._map = smap
        if self.keys.option == "RANDOM":
            lane_keys = smap.lane_keys(random_keys(KEY_POOL_SIZE))
            # a lane of slivers of the hash space may catch no pool key: then hash every key
            self._lane_keys = lane_keys if all(lane_keys) else []
        return smap

    async def route(self, records: Sequence[Record]) -> list[Sequence[Record]]:
        grouped = self.aggregate and self.keys.option != "RANDOM"
        if self.max_lanes <= 1 and not grouped:
            return [records]
        if not self.aggregate and len(records) <= self.max_call_entries:
            return [records]  # one call's worth: nothing to overlap, no ListShards needed
        smap = await self.shard_map()
        if smap is None or smap.lanes == 1:
            return [records]
        lanes: list[list[Record]] = [[] for _ in range(smap.lanes)]
        if self.aggregate and not grouped:
            # Shared RANDOM keys: the aggregate's key picks its lane, so any split works.
            step = -(-len(records) // smap.lanes)
            return [records[i : i + step] for i in range(0, len(records), step)]
        if self.keys.option == "RANDOM" and self._lane_keys:
            # A new record's key is ours to choose: cut the batch into equal runs, one per lane,
            # and key each run from that lane's keys (still random over the lane's shards).
            # A resent record keeps its key, and so its lane.
            fresh = [r for r in records if r.partition_key is None]
            step = -(-len(fresh) // smap.lanes) if fresh else 1
            for lane, i in enumerate(range(0, len(fresh), step)):
                run = fresh[i : i + step]
                for record, key in zip(
                    run, _keys_from(self._lane_keys[lane], len(run)), strict=True
                ):
                    record.partition_key = key
            lane_of = smap.cached_lane_of
        else:
            lane_of = smap.lane_of
        key_of = self.key_of
        for record in records:
            lanes[lane_of(key_of(record))].append(record)
        return [lane for lane in lanes if lane]

    # --- entries ----------------------------------------------------------------------------------

    def entries(self, records: Sequence[Record], lane: int = 0) -> list[Aggregate]:
        if self.aggregate:
            if records and max(map(len, [r.data for r in records])) > AGGREGATE_MAX_USER_BYTES:
                out = self._aggregates_and_plain(records, lane)
            else:
                out = self._aggregates(records, lane)
        else:
            if self.keys.option == "RANDOM":
                self._assign_random_keys(records)
            out = []
            append = out.append
            key_for = self.keys.key_for
            for record in records:
                data = record.data
                key = record.partition_key
                fresh = key is None
                if key is None:
                    key = record.partition_key = key_for(data)
                n = len(data)
                size = n + (len(key) if key.isascii() else len(key.encode()))
                if size > KINESIS_MAX_RECORD_BYTES:
                    append(self._plain(record, key, count=fresh))
                else:
                    append(Aggregate(data, [record], key, n, size))
        self._count_fallbacks()
        return out

    def _plain(self, record: Record, key: str, *, count: bool) -> Aggregate:
        """One record as its own Kinesis record, cut so data + key is exactly the 1 MiB limit.

        The cut is made again on every resend (the record keeps its data, which the flow's
        accounting of in-flight bytes counts); ``count`` it the first time only.
        """
        data = record.data
        kb = len(key.encode())
        if len(data) + kb > KINESIS_MAX_RECORD_BYTES:
            data = data[: KINESIS_MAX_RECORD_BYTES - kb - len(self.terminator)] + self.terminator
            if count:
                if self.metrics is not None:
                    self.metrics.records_truncated += 1
                now = time.monotonic()
                if now - self._last_cut_log >= 60.0:  # counted each time, said once a minute
                    self._last_cut_log = now
                    log.warning(
                        "%s: a record with its %d-byte partition key was over the 1 MiB limit; "
                        "cut to fit, ending with the truncation terminator",
                        self.name,
                        kb,
                    )
        return Aggregate(data, [record], key, len(data), len(data) + kb)

    def _aggregates_and_plain(self, records: Sequence[Record], lane: int) -> list[Aggregate]:
        """Aggregates of the records that can share one, and each bigger record plain, in order."""
        out: list[Aggregate] = []
        run: list[Record] = []
        for record in records:
            if len(record.data) <= AGGREGATE_MAX_USER_BYTES:
                run.append(record)
                continue
            if run:
                out += self._aggregates(run, lane)
                run = []
            if self.keys.option == "RANDOM":
                # A key of this lane's shards (aggregates share theirs; the record keeps none)
                keys = self._lane_keys[lane] if self._map is not None and self._lane_keys else None
                out.append(self._plain(record, random.choice(keys or random_keys(1)), count=True))
            else:
                fresh = record.partition_key is None
                out.append(self._plain(record, self.key_of(record), count=fresh))
        if run:
            out += self._aggregates(run, lane)
        return out

    def _aggregates(self, records: Sequence[Record], lane: int) -> list[Aggregate]:
        if self.keys.option == "RANDOM":
            keys = self._lane_keys[lane] if self._map is not None and self._lane_keys else None
            if keys:
                pick = random.choice

                def shared() -> str:
                    return pick(keys)

                return kpl_aggregate(records, self.key_of, shared_key=shared)
            return kpl_aggregate(records, self.key_of, shared_key=self._random_key)
        smap = self._map
        if smap is None:
            return kpl_aggregate(records, self.key_of)
        # The KPL's rule: an aggregate only holds records of one shard, and its own key (its
        # first record's) takes it there.
        by_shard: dict[int, list[Record]] = {}
        shard_of = smap.shard_of
        key_of = self.key_of
        for record in records:
            by_shard.setdefault(shard_of(key_of(record)), []).append(record)
        out: list[Aggregate] = []
        for group in by_shard.values():
            out += kpl_aggregate(group, key_of)
        return out

    def _assign_random_keys(self, records: Sequence[Record]) -> None:
        missing = [r for r in records if r.partition_key is None]
        for record, key in zip(missing, random_keys(len(missing)), strict=True):
            record.partition_key = key

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
        answers = response.get("Records", ())
        smap = self._map
        if smap is not None and not self._map_stale:
            known = smap.ids
            for answer in answers:
                shard = answer.get("ShardId")
                if shard is not None and shard not in known:
                    self._map_stale = True  # resharded: reload before the next send
                    break
        return [a.get("ErrorCode") or None for a in answers]


def kinesis_client(agent: AgentConfig) -> Any:
    """The sink's client, with PutRecords bodies written by agent/sinks/wire.py (botocore loads
    here, at the first send: see agent/sinks/aws.py)."""
    from agent.awsclient import make_client
    from agent.sinks.wire import install_put_records_serializer

    client = make_client(agent, "kinesis")
    install_put_records_serializer(client)
    return client


def _keys_from(keys: list[str], count: int) -> list[str]:
    """``count`` consecutive keys of ``keys`` from a random place, wrapping around."""
    start = random.randrange(len(keys))
    out = keys[start : start + count]
    while len(out) < count:
        out += keys[: count - len(out)]
    return out
