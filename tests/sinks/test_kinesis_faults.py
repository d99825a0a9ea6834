"""Throttling, 5xx, resets, stalls and lost responses between KinesisSink and kinesalite.

Batches go through the sender the daemon runs (a Flow's, agent/pipeline/sender.py): its retry
loop, its retryable rule, its backoff.

The fault proxy removes throttled entries before forwarding, so the stream holds exactly what the
service accepted; reading the stream back shows what was lost or duplicated.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import Sequence

from agent.config import AgentConfig, FlowConfig
from agent.errors import RetryableSinkError
from agent.observability.metrics import FlowMetrics
from agent.pipeline.flow import Flow
from agent.records import Checkpoint, Record
from agent.sinks import SendResult
from agent.sinks.kinesis import KinesisSink
from tests.peers.faultproxy import PASS, Event, Fault, FaultProxy
from tests.peers.helpers import new_stream, read_stream
from tests.peers.servers import Peer


def make_sink(endpoint: str, stream: str, socket_timeout_millis: int = 5_000) -> KinesisSink:
    flow = flow_config(stream)
    agent = AgentConfig(
        flows=(flow,),
        kinesis_endpoint=endpoint,
        socket_timeout_millis=socket_timeout_millis,
        connection_timeout_millis=2_000,
    )
    return KinesisSink.open(agent, flow, metrics=FlowMetrics(flow.flow_id, flow.destination))


def flow_config(stream: str) -> FlowConfig:
    return FlowConfig(
        file_pattern="/l/*.log",
        kinesis_stream=stream,
        retry_initial_backoff_millis=1,
        retry_max_backoff_millis=20,
    )


def lines(n: int, start: int = 0) -> list[Record]:
    return [Record(b"rid=%07d\n" % i, None, i, i + 1) for i in range(start, start + n)]


def deliver_all(sink: KinesisSink, batches: list[list[Record]]) -> list[SendResult]:
    """Ship batches one after another through the daemon's sender, recording every attempt's
    result."""
    results: list[SendResult] = []
    send = sink.send

    async def recording_send(
        records: Sequence[Record], checkpoints: Sequence[Checkpoint]
    ) -> SendResult:
        result = await send(records, checkpoints)
        results.append(result)
        return result

    sink.send = recording_send  # type: ignore[method-assign]
    flow_cfg = flow_config(sink.name)
    assert sink.metrics is not None
    sender = Flow(AgentConfig(flows=(flow_cfg,)), flow_cfg, sink, sink.metrics, None).sender

    async def main() -> None:
        for batch in batches:
            await sender.deliver_records(batch)

    asyncio.run(main())
    return results


def stored(kinesalite: Peer, stream: str) -> Counter[bytes]:
    return Counter(
        d for records in read_stream(kinesalite.endpoint, stream).values() for _, d in records
    )


def assert_only_failed_entries_resent(events: list[Event]) -> None:
    """After an attempt that did not get everything through, the next carries exactly the rest."""
    for prev, nxt in itertools.pairwise(events):
        if prev.fault == "lost":
            continue  # the client cannot know what got through: it resends everything
        left = [d for d in prev.received if d not in set(prev.forwarded)]
        if left:
            assert nxt.received == left, (prev, nxt)


class TestThrottling:
    def test_only_the_throttled_entries_are_resent(self, kinesalite: Peer, stream: str) -> None:
        """Entries 1, 3 and 4 are throttled; the retry carries exactly them, in order, once."""
        with FaultProxy(kinesalite.port) as proxy:
            sink = make_sink(proxy.endpoint, stream)
            batch = lines(10)
            proxy.plan(Fault("throttle", indices=frozenset({1, 3, 4})))
            results = deliver_all(sink, [batch])
        first, second = proxy.events
        assert first.rejected == [batch[i].data for i in (1, 3, 4)]
        assert second.received == first.rejected
        assert results[0].delivered == [r for i, r in enumerate(batch) if i not in (1, 3, 4)]
        assert results[0].retry == [batch[1], batch[3], batch[4]]
        assert results[1].delivered == [batch[1], batch[3], batch[4]]
        assert stored(kinesalite, stream) == Counter(r.data for r in batch)

    def test_everything_throttled_many_times(self, kinesalite: Peer, stream: str) -> None:
        """A shard refusing all entries eight times running: the batch still arrives, once."""
        with FaultProxy(kinesalite.port) as proxy:
            sink = make_sink(proxy.endpoint, stream)
            batch = lines(20)
            proxy.plan(*[Fault("throttle", fraction=1.0)] * 8)
            deliver_all(sink, [batch])
        assert len(proxy.events) == 9
        assert all(e.received == [r.data for r in batch] for e in proxy.events)
        assert sink.metrics is not None and sink.metrics.retries == 8
        assert stored(kinesalite, stream) == Counter(r.data for r in batch)


class TestConnectionFaults:
    def test_5xx_and_resets_resend_the_batch(self, kinesalite: Peer, stream: str) -> None:
        """500, 503 and a reset before forwarding: nothing stored until a clean attempt, then once."""
        with FaultProxy(kinesalite.port) as proxy:
            sink = make_sink(proxy.endpoint, stream)
            batch = lines(5)
            proxy.plan(Fault("status", status=500), Fault("status", status=503), Fault("reset"))
            results = deliver_all(sink, [batch])
        assert [e.fault for e in proxy.events] == ["status 500", "status 503", "reset", "pass"]
        assert all(isinstance(r.error, RetryableSinkError) for r in results[:3])
        assert results[3].delivered == batch
        assert stored(kinesalite, stream) == Counter(r.data for r in batch)

    def test_stall_times_out_and_retries(self, kinesalite: Peer, stream: str) -> None:
        """A server that never answers costs one socket timeout, then the batch goes through."""
        with FaultProxy(kinesalite.port) as proxy:
            sink = make_sink(proxy.endpoint, stream, socket_timeout_millis=300)
            batch = lines(3)
            proxy.plan(Fault("stall", seconds=2.0))
            results = deliver_all(sink, [batch])
        assert isinstance(results[0].error, RetryableSinkError)
        assert results[-1].delivered == batch
        assert stored(kinesalite, stream) == Counter(r.data for r in batch)


class TestChaos:
    def test_random_faults_lose_and_duplicate_nothing(self, kinesalite: Peer) -> None:
        """5,000 records through throttling, 5xx and resets at random: each stored exactly once."""
        stream = new_stream(kinesalite.endpoint, shards=3)

        def chaos(rng: random.Random) -> Fault:
            return rng.choices(
                [
                    PASS,
                    Fault("throttle", fraction=0.3),
                    Fault("throttle", fraction=0.9),
                    Fault("status", status=500),
                    Fault("status", status=503),
                    Fault("reset"),
                ],
                weights=[4, 3, 1, 1, 1, 1],
            )[0]

        with FaultProxy(kinesalite.port, seed=42) as proxy:
            proxy.plan(Fault("reset"), Fault("throttle", fraction=0.5), Fault("status", status=503))
            proxy.choose_with(chaos)
            sink = make_sink(proxy.endpoint, stream)
            batch = lines(5000)
            deliver_all(sink, [batch[i : i + 250] for i in range(0, 5000, 250)])
        kinds = Counter(e.fault.split()[0] for e in proxy.events)
        assert kinds["throttle"] > 5 and kinds["status"] > 1 and kinds["reset"] > 1
        assert_only_failed_entries_resent(proxy.events)
        assert stored(kinesalite, stream) == Counter(r.data for r in batch)

    def test_lost_responses_duplicate_exactly_their_records(self, kinesalite: Peer) -> None:
        """Responses dropped after the server stored the entries: the duplicates are exactly the
        records of the lost responses, and nothing is missing."""
        stream = new_stream(kinesalite.endpoint, shards=2)

        def lossy(rng: random.Random) -> Fault:
            return rng.choices(
                [PASS, Fault("lost"), Fault("throttle", fraction=0.4)], weights=[5, 2, 2]
            )[0]

        with FaultProxy(kinesalite.port, seed=7) as proxy:
            proxy.plan(Fault("lost"), Fault("throttle", fraction=0.5), Fault("lost"))
            proxy.choose_with(lossy)
            sink = make_sink(proxy.endpoint, stream)
            batch = lines(3000)
            deliver_all(sink, [batch[i : i + 100] for i in range(0, 3000, 100)])
        lost = [e for e in proxy.events if e.fault == "lost"]
        assert len(lost) >= 2, Counter(e.fault for e in proxy.events)
        expected_dupes = Counter(d for e in lost for d in e.forwarded)
        got = stored(kinesalite, stream)
        assert set(got) == {r.data for r in batch}
        dupes = Counter({d: n - 1 for d, n in got.items() if n > 1})
        assert dupes == expected_dupes
        assert_only_failed_entries_resent(proxy.events)
