"""The in-flight byte budget: reading stops while it is full, and every charge is released once
its records are delivered or skipped (whichever processing path they took)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.config import AgentConfig, FlowConfig
from agent.observability.metrics import FlowMetrics
from agent.pipeline.budget import RECORD_OVERHEAD
from agent.pipeline.flow import Flow
from agent.pipeline.reader import READ_CHUNK
from agent.sinks import MemorySink

LOGTOJSON = {"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG"}


def access_lines(count: int) -> list[bytes]:
    """Access lines where every 7th line matches no format (LOGTOJSON skips it)."""
    return [
        b"garbage %d\n" % i
        if i % 7 == 3
        else f'10.0.0.{i % 250} - - [22/Nov/2026:10:00:00 +0000] "GET /i/{i} HTTP/1.1" 200 {i}\n'.encode()
        for i in range(count)
    ]


def make_flow(logs: Path, sink: MemorySink, **overrides: object) -> Flow:
    worker = overrides.pop("processor_worker", None)
    flow_cfg = FlowConfig(
        file_pattern=str(logs / "*.log"),
        local_stream="test",
        initial_position="START_OF_FILE",
        max_buffer_age_millis=20,
        retry_initial_backoff_millis=10,
        retry_max_backoff_millis=20,
        **overrides,  # type: ignore[arg-type]
    )
    metrics = FlowMetrics(flow_cfg.flow_id, flow_cfg.destination)
    agent = AgentConfig(flows=(flow_cfg,))
    return Flow(agent, flow_cfg, sink, metrics, None, processor_worker=worker)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "worker"),
    [((), None), ((LOGTOJSON,), False), ((LOGTOJSON,), True)],
    ids=["no processors", "processors in process", "processor worker"],
)
def test_every_charge_is_released(
    tmp_path: Path, options: tuple[dict[str, str], ...], worker: bool | None
) -> None:
    """After a run, nothing is charged: delivered and skipped records gave their bytes back."""
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = access_lines(5000)
    (logs / "app.log").write_bytes(b"".join(lines))
    sink = MemorySink()
    sink.fail_next = 3  # retried sends release what they deliver, once
    flow = make_flow(logs, sink, data_processing_options=options, processor_worker=worker)
    asyncio.run(flow.run(asyncio.Event(), once=True))
    skipped = sum(1 for line in lines if line.startswith(b"garbage")) if options else 0
    assert len(sink.records) == len(lines) - skipped
    assert flow.processing.use_worker is bool(options and worker)
    assert flow.budget.charged == 0
    assert (flow.metrics.in_flight_bytes, flow.metrics.in_flight_records) == (0, 0)


def test_reading_stops_while_the_budget_is_full(tmp_path: Path) -> None:
    """The destination is down: the reader stops one read past the budget, the rest of the file
    stays on disk, and everything is read and delivered once the destination is back."""
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = access_lines(60_000)  # ~4.5 MB: several reads
    size = sum(map(len, lines))
    (logs / "app.log").write_bytes(b"".join(lines))
    sink = MemorySink()
    sink.fail_next = 10**9
    limit = 64 * 1024
    flow = make_flow(logs, sink, max_in_flight_bytes=limit)
    # at most one read (READ_CHUNK of the shortest lines) is taken after the budget was checked
    bound = limit + READ_CHUNK + RECORD_OVERHEAD * (READ_CHUNK // min(map(len, lines)) + 1)

    async def poll(predicate: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    async def main() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(flow.run(stop))
        await poll(lambda: flow.metrics.in_flight_records > 0)
        peak = 0
        for _ in range(30):  # a while for a reader that ignores the budget to read on
            peak = max(peak, flow.budget.charged)
            await asyncio.sleep(0.01)
        assert flow.files is not None
        (tracked,) = flow.files.readable()
        read_to = tracked.offset
        sink.fail_next = 0
        await poll(lambda: len(sink.records) == len(lines))
        stop.set()
        await task
        assert peak <= bound, (peak, bound)
        return read_to

    read_to = asyncio.run(main())
    assert 0 < read_to < size
    assert sink.records == lines
    assert flow.budget.charged == 0
