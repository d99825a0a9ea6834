"""Processing a span: skipped records leave the span, but the span still covers its whole read, so
acknowledging it moves the checkpoint past them, and a span whose records are all skipped is
acknowledged at once."""

from __future__ import annotations

import asyncio

import pytest

from agent.config import AgentConfig, FlowConfig
from agent.observability.metrics import FlowMetrics
from agent.pipeline.flow import Flow
from agent.sinks import MemorySink
from agent.tailing.framing import Framed
from tests.support.spans import file_acks

# LOGTOJSON skips a line that matches no format
LOGTOJSON = {"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG"}


def access(i: int) -> bytes:
    return b'10.0.0.%d - - [22/Nov/2026:10:00:00 +0000] "GET /x HTTP/1.1" 200 %d\n' % (i, i)


def flow_with_chain() -> Flow:
    cfg = FlowConfig(
        file_pattern="/l/*.log", kinesis_stream="s", data_processing_options=(LOGTOJSON,)
    )
    return Flow(
        AgentConfig(flows=(cfg,)),
        cfg,
        MemorySink(),
        FlowMetrics(cfg.flow_id, cfg.destination),
        None,
        processor_worker=False,
    )


def framed(lines: list[bytes]) -> Framed:
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    return Framed(lines, offsets)


@pytest.mark.parametrize(
    "kept",
    [
        pytest.param([False, True, True, False], id="skipped-first-and-last"),
        pytest.param([True, False, False, True], id="skipped-between"),
        pytest.param([False, False, False], id="all-skipped"),
        pytest.param([True, True], id="none-skipped"),
    ],
)
def test_skipped_records_leave_the_span_but_not_its_range(kept: list[bool]) -> None:
    lines = [access(i) if keep else b"garbage %d\n" % i for i, keep in enumerate(kept)]
    flow = flow_with_chain()
    acks = file_acks()
    whole = sum(map(len, lines))

    async def run() -> None:
        flow.processing.submit(acks, framed(lines))
        queued = flow.sender.batcher.take() if flow.sender.batcher else []
        if any(kept):
            [span] = queued
            assert len(span) == sum(kept)  # only the kept records travel on
            assert (span.start, span.end) == (0, whole)  # the span still covers the whole read
            # contiguous: every skipped line belongs to a neighbour's range
            assert all(a < b for a, b in zip(span.offsets, span.offsets[1:], strict=False))
            assert acks.checkpoint == 0  # nothing acknowledged before it is delivered
            await flow.sender.deliver(queued)
        else:
            assert queued == []  # nothing to send: acknowledged at once

    asyncio.run(run())
    assert acks.checkpoint == whole and not acks.pending
    assert flow.metrics.records_skipped == kept.count(False)
    assert flow.processing.budget.charged == 0
