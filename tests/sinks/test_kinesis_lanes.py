"""KinesisSink lanes: PutRecords calls in flight side by side on disjoint shards, order kept per shard.

The shard map (ListShards) cuts the open shards into lanes; each lane's calls go in order and stop
at the first that does not get everything through, so a shard never takes a record ahead of one
queued before it — through throttling, 5xx and resets, and with ListShards refused.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from agent.config import AgentConfig, FlowConfig
from agent.hashspace import even_ranges, hash_key
from agent.observability.metrics import FlowMetrics
from agent.records import Record
from agent.sinks import SendResult
from agent.sinks.kinesis import AGGREGATED_SEND_LANES, SEND_LANES, KinesisSink
from agent.sinks.shards import ShardMap
from tests.peers.faultproxy import PASS, Event, Fault, FaultProxy, at_random
from tests.peers.helpers import deaggregate, new_stream, read_stream, shard_ranges
from tests.peers.servers import Peer
from tests.sinks.test_kinesis import sink_for
from tests.sinks.test_kinesis_faults import deliver_all, make_sink
from tests.support.logs import line_records


def assert_shard_order(kinesalite: Peer, stream: str, batch: list[Record]) -> None:
    """Every record stored once, and each shard holds its records in the batch's order."""
    position = {r.data: i for i, r in enumerate(batch)}
    got = read_stream(kinesalite.endpoint, stream)
    stored = [d for records in got.values() for _, d in records]
    assert Counter(stored) == Counter(r.data for r in batch)
    for shard, records in got.items():
        order = [position[d] for _, d in records]
        assert order == sorted(order), shard


def assert_attempts_in_shard_order(
    events: list[Event], batch: list[Record], smap: ShardMap
) -> None:
    """Per shard, what PutRecords was asked to store keeps the queue's order.

    PutRecords itself may store entries behind a throttled one in the same call (that is the API);
    what the sink controls is that every entry not stored is the first thing its shard is asked
    for again, before anything queued behind it.
    """
    by_data = {r.data: r for r in batch}
    position = {r.data: i for i, r in enumerate(batch)}
    outstanding: dict[int, list[bytes]] = {}
    attempted: dict[int, int] = {}
    for event in events:
        stored = set(event.forwarded)
        per_shard: dict[int, list[bytes]] = {}
        for data in event.received:
            per_shard.setdefault(smap.shard_of(by_data[data].partition_key or ""), []).append(data)
        for shard, sent in per_shard.items():
            waiting = outstanding.get(shard, [])
            k = min(len(waiting), len(sent))
            assert sent[:k] == waiting[:k], (shard, event.fault)
            fresh = sent[k:]
            assert not (fresh and k < len(waiting)), (shard, event.fault)
            order = [position[d] for d in fresh]
            assert order == sorted(order) and (not order or order[0] > attempted.get(shard, -1))
            if order:
                attempted[shard] = order[-1]
            outstanding[shard] = [d for d in sent if d not in stored] + waiting[k:]
    assert not any(outstanding.values())


class TestShardMap:
    def test_lanes_are_contiguous_runs_of_shards(self) -> None:
        """Four even shards in two lanes: the lower half of the hash space is lane 0."""
        ranges = even_ranges(4)
        smap = ShardMap([(f"s{i}", start) for i, (start, _) in enumerate(ranges)], 2)
        assert smap.lanes == 2
        assert smap.lane_of_shard == [0, 0, 1, 1]
        for key in (f"k{i}" for i in range(200)):
            shard = smap.shard_of(key)
            start, end = ranges[shard]
            assert start <= hash_key(key) <= end
            assert smap.cached_lane_of(key) == (0 if shard < 2 else 1)

    def test_never_more_lanes_than_shards(self) -> None:
        """One shard is one lane, whatever the sink would like."""
        assert ShardMap([("only", 0)], 8).lanes == 1


def timed_send(
    proxy: FaultProxy, sink: KinesisSink, batch: list[Record]
) -> tuple[SendResult, float]:
    """One send with every call taking ~0.3 s at the service: its result and how long it took
    (the shard map is fetched before the clock starts)."""
    proxy.choose_with(lambda rng: Fault("delay", seconds=0.3))
    asyncio.run(sink.shard_map())  # ListShards outside the timing
    start = time.perf_counter()
    result = asyncio.run(sink.send(batch, ()))
    return result, time.perf_counter() - start


class TestLanes:
    def test_calls_overlap_and_each_shard_keeps_order(self, kinesalite: Peer) -> None:
        """2,000 records on 4 shards: 4 calls in 2 lanes, each ~0.3 s at the service, take
        about two calls' time, and every shard holds its records in order."""
        stream = new_stream(kinesalite.endpoint, shards=4)
        batch = line_records(2000)
        with FaultProxy(kinesalite.port) as proxy:
            sink = make_sink(proxy.endpoint, stream)
            result, elapsed = timed_send(proxy, sink, batch)
        assert result.error is None and not result.retry
        assert Counter(r.data for r in result.delivered) == Counter(r.data for r in batch)
        assert sink.metrics is not None and sink.metrics.send_calls == 4
        assert SEND_LANES == 2 and elapsed < 4 * 0.3
        assert_shard_order(kinesalite, stream, batch)

    def test_aggregated_calls_overlap_on_four_lanes(self, kinesalite: Peer) -> None:
        """Aggregated, 4 shards: 4 calls, one per shard, each ~0.3 s at the service, take about
        one call's time; every user record arrives once and each shard keeps their order."""
        stream = new_stream(kinesalite.endpoint, shards=4)
        batch = line_records(8000)
        with FaultProxy(kinesalite.port) as proxy:
            flow = FlowConfig(
                file_pattern="/l/*.log", kinesis_stream=stream, aggregate_records=True
            )
            agent = AgentConfig(flows=(flow,), kinesis_endpoint=proxy.endpoint)
            sink = KinesisSink.open(
                agent, flow, metrics=FlowMetrics(flow.flow_id, flow.destination)
            )
            assert sink.max_send_bytes == AGGREGATED_SEND_LANES * sink.max_batch_bytes
            result, elapsed = timed_send(proxy, sink, batch)
        assert result.error is None and not result.retry
        assert sink.metrics is not None and sink.metrics.send_calls == 4
        assert AGGREGATED_SEND_LANES == 4 and elapsed < 2 * 0.3
        users: dict[str, list[bytes]] = {}
        for shard, stored in read_stream(kinesalite.endpoint, stream).items():
            users[shard] = [base64.b64decode(u["kinesis"]["data"]) for u in deaggregate(stored)]
        assert len(users) == 4
        position = {r.data: i for i, r in enumerate(batch)}
        assert Counter(d for got in users.values() for d in got) == Counter(r.data for r in batch)
        for got in users.values():
            order = [position[d] for d in got]
            assert order == sorted(order)

    def test_partial_failures_keep_order_per_shard(self, kinesalite: Peer) -> None:
        """Throttling, 5xx and resets at random under two lanes: nothing lost, nothing duplicated,
        no shard ever takes a record ahead of one queued before it."""
        stream = new_stream(kinesalite.endpoint, shards=4)

        chaos = at_random(
            PASS,
            Fault("throttle", fraction=0.3),
            Fault("status", status=503),
            Fault("reset"),
            weights=[4, 3, 1, 1],
        )

        batch = line_records(8000)
        with FaultProxy(kinesalite.port, seed=3) as proxy:
            proxy.plan(Fault("throttle", fraction=0.5), PASS, Fault("status", status=500))
            proxy.choose_with(chaos)
            sink = make_sink(proxy.endpoint, stream)
            results = deliver_all(sink, [batch[i : i + 2000] for i in range(0, 8000, 2000)])
        kinds = Counter(e.fault.split()[0] for e in proxy.events)
        assert kinds["throttle"] >= 3 and kinds["pass"] >= 3
        assert sum(len(r.retry) for r in results) > 0
        smap = sink._map
        assert smap is not None and smap.lanes == 2
        assert_attempts_in_shard_order(proxy.events, batch, smap)
        got = read_stream(kinesalite.endpoint, stream)
        assert Counter(d for recs in got.values() for _, d in recs) == Counter(
            r.data for r in batch
        )

    def test_a_throttled_call_holds_back_the_rest_of_its_lane(self, kinesalite: Peer) -> None:
        """After a call with a throttled entry its lane sends nothing more in that send: the
        throttled entry and the lane's later records come back to retry, in order; the other
        lane delivers all of its records."""
        stream = new_stream(kinesalite.endpoint, shards=2)
        batch = line_records(2000)
        with FaultProxy(kinesalite.port) as proxy:
            sink = make_sink(proxy.endpoint, stream)
            smap = asyncio.run(sink.shard_map())
            assert smap is not None and smap.lanes == 2
            proxy.plan(Fault("throttle", indices=frozenset({0})))
            result = asyncio.run(sink.send(batch, ()))
            rejected = proxy.events[0].rejected
            forwarded = {d for e in proxy.events for d in e.forwarded}
            pending = result.retry
            while pending:
                pending = asyncio.run(sink.send(pending, ())).retry
        lane = next(smap.lane_of(r.partition_key or "") for r in batch if r.data == rejected[0])
        in_lane = [r for r in batch if smap.lane_of(r.partition_key or "") == lane]
        assert result.retry == [r for r in in_lane if r.data not in forwarded]
        assert result.retry[0].data == rejected[0] and len(result.retry) > 1
        assert {r.data for r in batch if r not in in_lane} <= forwarded
        assert_attempts_in_shard_order(proxy.events, batch, smap)
        got = read_stream(kinesalite.endpoint, stream)
        assert sorted(d for recs in got.values() for _, d in recs) == [r.data for r in batch]

    def test_list_shards_refused_means_one_call_at_a_time(self, kinesalite: Peer) -> None:
        """Without ListShards (the AWS agent's policy has only PutRecords) the sink still delivers
        everything in order, one call at a time, and does not ask again on every send."""
        stream = new_stream(kinesalite.endpoint, shards=4)
        sink = sink_for(kinesalite.endpoint, stream)
        asked: list[int] = []

        def refuse(**_: Any) -> Any:
            asked.append(1)
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListShards"
            )

        sink.client.list_shards = refuse
        batch = line_records(2000)
        for chunk in (batch[:1000], batch[1000:]):
            result = asyncio.run(sink.send(chunk, ()))
            assert result.error is None and result.delivered == chunk
        assert asked == [1]
        got = read_stream(kinesalite.endpoint, stream)
        position = {r.data: i for i, r in enumerate(batch)}
        for records in got.values():
            order = [position[d] for _, d in records]
            assert order == sorted(order)

    def test_an_unknown_shard_in_an_answer_reloads_the_map(self, kinesalite: Peer) -> None:
        """A shard id the map does not know (the stream was resharded) makes the next send
        load the map again."""
        stream = new_stream(kinesalite.endpoint, shards=4)
        sink = sink_for(kinesalite.endpoint, stream)
        sink._map = ShardMap([("shardId-gone-1", 0), ("shardId-gone-2", 1 << 127)], SEND_LANES)
        asyncio.run(sink.send(line_records(1000), ()))
        assert sink._map_stale
        asyncio.run(sink.send(line_records(1000), ()))
        assert sink._map is not None
        assert sink._map.ids == set(shard_ranges(kinesalite.endpoint, stream))


class TestAggregationByShard:
    @pytest.mark.parametrize("option", ["DETERMINISTIC", "FIELD"])
    def test_an_aggregate_holds_records_of_its_own_shard(
        self, kinesalite: Peer, option: str
    ) -> None:
        """With own keys, each aggregate carries only user records whose key hashes into the shard
        it is stored in (the KPL's rule), and each shard keeps their order."""
        stream = new_stream(kinesalite.endpoint, shards=4)
        extra = {"partition_key_field": "user"} if option == "FIELD" else {}
        sink = sink_for(
            kinesalite.endpoint,
            stream,
            aggregate_records=True,
            partition_key_option=option,
            **extra,
        )
        batch = [
            Record(b'{"user": "u%d", "n": %d}\n' % (i % 37, i), None, i, i + 1) for i in range(3000)
        ]
        result = asyncio.run(sink.send(batch, ()))
        assert result.error is None and not result.retry
        ranges = shard_ranges(kinesalite.endpoint, stream)
        position = {r.data: i for i, r in enumerate(batch)}
        total = 0
        for shard, stored in read_stream(kinesalite.endpoint, stream).items():
            users = deaggregate(stored)
            start, end = ranges[shard]
            for user in users:
                assert start <= hash_key(user["kinesis"]["partitionKey"]) <= end
            order = [position[base64.b64decode(u["kinesis"]["data"])] for u in users]
            assert order == sorted(order)
            total += len(users)
        assert total == len(batch)
