"""How a running flow delivers: retries, the failing status, its gauges (in-process harness)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.errors import FatalSinkError, RetryableSinkError
from agent.records import Checkpoint, Record
from agent.sinks import MemorySink, SendResult
from tests.tailing.harness import FlowHarness, fast_flow


class ScriptedSink(MemorySink):
    """A MemorySink whose next sends fail as scripted: an error for the whole call, or a set of
    positions in the batch to fail."""

    def __init__(self, script: list[object]) -> None:
        super().__init__()
        self.script = script
        self.attempts: list[list[bytes]] = []

    async def send(
        self, records: Sequence[Record], checkpoints: Sequence[Checkpoint]
    ) -> SendResult:
        self.attempts.append([r.data for r in records])
        step = self.script.pop(0) if self.script else set()
        if isinstance(step, Exception):
            return SendResult(retry=list(records), error=step)
        assert isinstance(step, set)
        failed = [r for i, r in enumerate(records) if i in step]
        result = await super().send([r for i, r in enumerate(records) if i not in step], ())
        result.retry = failed
        return result


def lines(n: int) -> list[bytes]:
    return [b"line %d\n" % i for i in range(n)]


def harness(tmp_path: Path, logs: Path, sink: MemorySink) -> FlowHarness:
    flow = fast_flow(
        str(logs / "app.log*"), retry_initial_backoff_millis=10, retry_max_backoff_millis=20
    )
    h = FlowHarness(tmp_path, flow, sink_factory=lambda: sink)
    h.memory = sink
    return h


def test_only_failed_entries_are_resent_in_order(tmp_path: Path, logs: Path) -> None:
    """A partial failure resends exactly the failed entries, in their order; nothing twice."""
    (logs / "app.log").write_bytes(b"".join(lines(6)))
    sink = ScriptedSink([{1, 3, 4}, {0}])
    h = harness(tmp_path, logs, sink)
    h.start()
    try:
        assert h.wait_until(lambda: len(sink.records) == 6)
        h.run_for(0.2)
    finally:
        h.close()
    assert sink.attempts[:3] == [lines(6), [b"line 1\n", b"line 3\n", b"line 4\n"], [b"line 1\n"]]
    assert sorted(sink.records) == sorted(lines(6))


def test_fatal_errors_mark_the_flow_failing_and_log_sparingly(
    tmp_path: Path, logs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Access denied, again and again: the flow says ``failing`` with the reason, logs one error
    line (not one per attempt), keeps the data, and is ``running`` again once sends succeed."""
    (logs / "app.log").write_bytes(b"".join(lines(3)))
    sink = ScriptedSink([FatalSinkError("AccessDenied: no") for _ in range(30)])
    h = harness(tmp_path, logs, sink)
    states: list[tuple[str, str | None]] = []
    with caplog.at_level(logging.ERROR, logger="agent.pipeline.sender"):
        h.start()
        try:
            assert h.flow is not None
            m = h.flow.metrics

            def watch() -> bool:
                states.append((m.status, m.last_error))
                return sink.records == lines(3)

            assert h.wait_until(watch, timeout=30)
            assert m.status == "running"
        finally:
            h.close()
    assert ("failing", "AccessDenied: no") in states
    assert len(sink.attempts) == 31
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "AccessDenied" in errors[0], errors


def test_retryable_errors_retry_until_delivered(tmp_path: Path, logs: Path) -> None:
    (logs / "app.log").write_bytes(b"".join(lines(2)))
    sink = ScriptedSink([RetryableSinkError("503") for _ in range(5)])
    h = harness(tmp_path, logs, sink)
    h.start()
    try:
        assert h.wait_until(lambda: sink.records == lines(2))
    finally:
        h.close()
    assert len(sink.attempts) == 6


def test_stuck_flow_gauge_counts_failed_attempts_in_a_row(tmp_path: Path, logs: Path) -> None:
    """consecutive_errors (CloudWatch's ConsecutiveProcessingErrors) climbs with every failed
    attempt of a batch and is 0 again once the batch is delivered."""
    (logs / "app.log").write_bytes(b"one\ntwo\n")
    h = FlowHarness(
        tmp_path,
        fast_flow(
            str(logs / "app.log*"), retry_initial_backoff_millis=10, retry_max_backoff_millis=20
        ),
    )
    h.memory.fail_next = 4
    seen: list[int] = []
    h.start()
    try:
        assert h.flow is not None
        metrics = h.flow.metrics

        def watch() -> bool:
            if not seen or seen[-1] != metrics.consecutive_errors:
                seen.append(metrics.consecutive_errors)
            return h.memory.records == [b"one\n", b"two\n"]

        assert h.wait_until(watch)
        assert metrics.consecutive_errors == 0
    finally:
        h.close()
    assert max(seen) == 4
    assert seen == [*sorted(seen[:-1]), 0]


def test_a_wake_up_while_the_sender_waits_is_not_lost(tmp_path: Path, logs: Path) -> None:
    """The reader finishes while the sender waits (for a batch's age, or while the checkpointer
    saves on its own task): the sender must see it at once, not after sleeping its idle wait
    (a lost wake-up that cost every `run --once` into Kinesis a second)."""
    h = FlowHarness(tmp_path, fast_flow(str(logs / "app.log*")))
    from agent.observability.metrics import FlowMetrics
    from agent.pipeline.flow import Flow
    from agent.pipeline.sender import IDLE_WAIT

    flow = Flow(h.agent, h.flow_config, h.memory, FlowMetrics("f", "LocalStream:test"), None)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        loop.call_later(0.05, flow.sender.done_reading)  # what the reader does when it is done
        await asyncio.wait_for(flow.sender.run(), 5)
        return loop.time() - started

    try:
        took = asyncio.run(main())
    finally:
        h.close()
    assert took < IDLE_WAIT / 2, took  # the wake-up survived: the wait ended at once
