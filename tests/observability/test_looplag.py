"""The agent measures how late its own event loop runs, and reports it."""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from agent.observability.looplag import LagMeter, measure
from agent.observability.metrics import AgentMetrics
from agent.observability.prometheus import AgentCollector
from agent.observability.status import snapshot
from agent.observability.top import print_status


class TestLagMeter:
    def test_worst_and_recent(self) -> None:
        """The worst lag is kept for ever; "recent" forgets what is older than a minute."""
        meter = LagMeter()
        meter.observe(100.0, 0.5)
        meter.observe(130.0, 0.02)
        assert meter.worst == 0.5
        assert meter.recent(130.0) == 0.5
        meter.observe(170.5, 0.01)
        assert meter.recent(170.5) == 0.02
        assert meter.worst == 0.5

    def test_a_blocked_loop_is_measured(self) -> None:
        """A callback that holds the loop for 300 ms shows as about 300 ms of lag."""
        meter = LagMeter()

        async def main() -> None:
            task = asyncio.create_task(measure(meter, tick=0.01))
            await asyncio.sleep(0.05)
            time.sleep(0.3)  # the loop is held, as a walk of a huge directory would hold it
            await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert 0.25 <= meter.worst < 1.0
        assert meter.recent(time.monotonic()) == meter.worst


class TestReported:
    def test_status_and_prometheus_show_the_lag(self) -> None:
        """``status --json`` and the Prometheus endpoint carry the worst and recent loop lag."""
        metrics = AgentMetrics()
        metrics.loop_lag.observe(time.monotonic(), 0.123)
        snap = snapshot(metrics)
        assert snap["loop_lag_worst_seconds"] == 0.123
        assert snap["loop_lag_recent_seconds"] == 0.123
        registry = CollectorRegistry()
        registry.register(AgentCollector(metrics))
        text = generate_latest(registry).decode()
        assert 'kinesis_agent_event_loop_lag_seconds{window="worst"} 0.123' in text
        assert 'kinesis_agent_event_loop_lag_seconds{window="recent"} 0.123' in text
        console = Console(record=True, width=240)
        print_status(snap, console)
        assert "loop lag 123 ms (worst 123 ms)" in console.export_text()
