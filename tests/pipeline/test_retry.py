"""Backoff arithmetic and the sender's resend loop (the one the daemon runs), with a scripted fake
sink and an injected clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from itertools import pairwise

import pytest

from agent.config import AgentConfig, FlowConfig
from agent.errors import FatalSinkError, RetryableSinkError
from agent.observability.metrics import FlowMetrics
from agent.pipeline.flow import Flow
from agent.pipeline.sender import Backoff
from agent.records import Checkpoint, Record, Span
from agent.sinks import SendResult
from agent.tailing.tailer import FileAcks
from tests.support.spans import file_acks


def records(n: int, acks: FileAcks | None = None, per_span: int = 2) -> list[Span]:
    """Records r0..r(n-1) of 10 bytes' span each, read ``per_span`` at a time (registered with
    ``acks``, as the reader registers them); the sender cuts them into records for the sink."""
    acks = acks or file_acks()
    out = []
    for first in range(0, n, per_span):
        ids = range(first, min(n, first + per_span))
        span = Span([b"r%d\n" % i for i in ids], [i * 10 for i in ids] + [ids[-1] * 10 + 10], acks)
        acks.register(span)
        out.append(span)
    return out


def datas(spans: list[Span]) -> list[bytes]:
    return [d for span in spans for d in span.datas]


class ScriptedSink:
    """Fails entries as told, attempt by attempt; remembers what each attempt carried."""

    transactional = False
    packs_records = False
    max_record_bytes = 1024
    max_batch_records = 500
    max_batch_bytes = 1 << 20
    max_send_records = None
    max_send_bytes = None
    metrics = None

    def __init__(self, script: list[object]) -> None:
        # each step: a set of positions to fail, or an exception to fail the whole call with
        self.script = script
        self.attempts: list[list[bytes]] = []
        self.stored: list[bytes] = []
        self.watch: list[Record] = []  # the first attempt's records: each attempt notes their acks
        self.acks: FileAcks | None = None  # whose checkpoint each attempt notes
        self.acked_at_send: list[list[bytes]] = []
        self.checkpoint_at_send: list[int] = []

    async def send(self, batch: Sequence[Record], checkpoints: Sequence[Checkpoint]) -> SendResult:
        self.attempts.append([r.data for r in batch])
        self.watch = self.watch or list(batch)
        self.acked_at_send.append([r.data for r in self.watch if r.acked])
        if self.acks is not None:
            self.checkpoint_at_send.append(self.acks.checkpoint)
        step = self.script.pop(0) if self.script else set()
        if isinstance(step, BaseException):
            return SendResult(retry=list(batch), error=step)
        assert isinstance(step, set)
        result = SendResult()
        for i, r in enumerate(batch):
            (result.retry if i in step else result.delivered).append(r)
        self.stored.extend(r.data for r in result.delivered)
        return result

    def load_checkpoints(self, flow_id: str) -> list[Checkpoint]:
        return []

    async def aclose(self) -> None:
        pass


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class TestBackoff:
    def test_doubles_from_initial_to_the_cap(self) -> None:
        """Without jitter the ceiling doubles each failure and stops at the maximum."""
        b = Backoff(100, 1000, rand=lambda: 1.0)
        assert [b.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]

    def test_jitter_keeps_at_least_half(self) -> None:
        """Each delay is within [ceiling/2, ceiling]."""
        b = Backoff(100, 10_000, rand=lambda: 0.0)
        assert [b.next_delay() for _ in range(3)] == [0.05, 0.1, 0.2]

    def test_reset_starts_over(self) -> None:
        """After a success the next failure waits the initial delay again."""
        b = Backoff(100, 10_000, rand=lambda: 1.0)
        for _ in range(10):
            b.next_delay()
        b.reset()
        assert b.next_delay() == 0.1

    def test_never_gives_up_nor_overflows(self) -> None:
        """Thousands of failures still give the cap, not an error."""
        b = Backoff(100, 10_000, rand=lambda: 1.0)
        for _ in range(5000):
            delay = b.next_delay()
        assert delay == 10.0

    def test_rejects_nonsense(self) -> None:
        """A maximum below the initial delay is a programming error."""
        with pytest.raises(ValueError):
            Backoff(100, 50)


def sender_of(sink: ScriptedSink, t: FakeTime, metrics: FlowMetrics | None = None) -> Flow:
    """A flow as the daemon builds it (not run): its sender, on fake time, without jitter."""
    flow_cfg = FlowConfig(file_pattern="/l/*.log", kinesis_stream="s")
    agent = AgentConfig(flows=(flow_cfg,))
    metrics = metrics or FlowMetrics(flow_cfg.flow_id, flow_cfg.destination)
    flow = Flow(agent, flow_cfg, sink, metrics, None, clock=t.clock)
    flow.sender.sleep = t.sleep
    flow.sender.backoff = Backoff(100, 10_000, rand=lambda: 1.0)
    return flow


class TestSenderRetries:
    def run(
        self, sink: ScriptedSink, batch: list[Span], metrics: FlowMetrics | None = None
    ) -> tuple[int, FakeTime]:
        t = FakeTime()
        attempts = asyncio.run(sender_of(sink, t, metrics).sender.deliver(batch))
        return attempts, t

    def test_resends_only_failed_entries_in_order(self) -> None:
        """Partial failures resend exactly the failed entries, in their original order."""
        sink = ScriptedSink([{1, 3, 4}, {0}, set()])
        batch = records(6)
        attempts, t = self.run(sink, batch)
        assert attempts == 3
        assert sink.attempts[1] == [b"r1\n", b"r3\n", b"r4\n"]
        assert sink.attempts[2] == [b"r1\n"]
        assert sorted(sink.stored) == sorted(datas(batch))
        assert len(sink.stored) == 6
        assert t.sleeps == [0.1, 0.2]

    def test_whole_call_errors_resend_everything(self) -> None:
        """A retryable error resends the whole batch after an exponential delay."""
        sink = ScriptedSink([RetryableSinkError("503"), RetryableSinkError("503"), set()])
        attempts, t = self.run(sink, records(3))
        assert attempts == 3
        assert sink.attempts[0] == sink.attempts[1] == sink.attempts[2]
        assert t.sleeps == [0.1, 0.2]

    def test_fatal_errors_wait_the_cap_and_mark_failing(self) -> None:
        """Access denied retries at the maximum delay and the flow shows ``failing`` until it heals."""
        metrics = FlowMetrics("f", "KinesisStream:s")
        sink = ScriptedSink([FatalSinkError("denied"), FatalSinkError("denied"), set()])
        attempts, t = self.run(sink, records(2), metrics)
        assert attempts == 3
        assert all(5.0 <= s <= 10.0 for s in t.sleeps)
        assert metrics.status == "running"
        assert metrics.retries == 2
        assert metrics.last_error is None

    def test_fatal_errors_log_loudly_once_a_minute(self, caplog: pytest.LogCaptureFixture) -> None:
        """An hour of access denied gives about one error line per minute, not one per attempt."""
        script: list[object] = [FatalSinkError("denied") for _ in range(400)]
        sink = ScriptedSink([*script, set()])
        with caplog.at_level(logging.ERROR, logger="agent.pipeline.sender"):
            _, t = self.run(sink, records(1))
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        minutes = t.now / 60
        assert len(errors) <= minutes + 1
        assert len(errors) >= minutes / 2
        assert "denied" in errors[0].getMessage()

    def test_delivered_records_are_acknowledged_at_each_attempt(self) -> None:
        """Delivered records are acknowledged to their file as soon as each attempt returns,
        before the retries of their neighbours finish; the file's checkpoint stays behind the
        record still being retried (it never passes a record in flight)."""
        acks = file_acks()
        batch = records(3, acks, per_span=1)
        sink = ScriptedSink([{0}, set()])
        sink.acks = acks
        self.run(sink, batch)
        acked = [*sink.acked_at_send, [r.data for r in sink.watch if r.acked]]
        delivered = [[d for d in now if d not in before] for before, now in pairwise(acked)]
        assert delivered == [[b"r1\n", b"r2\n"], [b"r0\n"]]
        assert sink.checkpoint_at_send == [0, 0]  # r1 and r2 acknowledged, r0 still in flight
        assert acks.checkpoint == 30 and not acks.pending

    def test_a_checkpoint_waits_behind_a_record_of_an_earlier_span(self) -> None:
        """Records cut from two reads: the second read delivered whole does not move the
        checkpoint past the first read's record still being retried."""
        acks = file_acks()
        batch = records(4, acks, per_span=2)
        sink = ScriptedSink([{1}, {0}, set()])
        sink.acks = acks
        self.run(sink, batch)
        # r0, r2 and r3 delivered first; r1 retried twice: the checkpoint stays at r0's end
        assert sink.checkpoint_at_send == [0, 10, 10]
        assert acks.checkpoint == 40 and not acks.pending

    def test_the_delivered_head_of_a_span_is_acknowledged_before_its_tail(self) -> None:
        """Records cut from one read and delivered first move the checkpoint as far as they go
        without a gap, before the rest of the read is delivered: a restart while the tail is
        retried re-sends only the tail."""
        acks = file_acks()
        batch = records(4, acks, per_span=4)
        sink = ScriptedSink([{2, 3}, {1}, set()])
        sink.acks = acks
        self.run(sink, batch)
        # r0 and r1 delivered at the first attempt, r2 at the second, r3 at the third
        assert sink.checkpoint_at_send == [0, 20, 30]
        assert acks.checkpoint == 40 and not acks.pending

    def test_success_resets_the_backoff(self) -> None:
        """A fully delivered batch leaves the sender's backoff at its start."""
        t = FakeTime()
        sink = ScriptedSink([{0}, {0}, set()])
        flow = sender_of(sink, t)
        asyncio.run(flow.sender.deliver(records(1)))
        assert flow.sender.backoff.failures == 0
