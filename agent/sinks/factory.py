"""open_sink(): the destination a flow's config asks for (a module of its own, so the contract in
agent.sinks imports no destination and no destination imports back through it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import AgentConfig, FlowConfig
    from agent.observability.metrics import FlowMetrics
    from agent.sinks import Sink


def open_sink(agent: AgentConfig, flow: FlowConfig, metrics: FlowMetrics | None = None) -> Sink:
    """Build the sink that a flow's destination key asks for."""
    if flow.local_stream is not None:
        from agent.sinks.local import LocalSink

        return LocalSink.open(agent, flow, metrics)
    if flow.kinesis_stream is not None:
        from agent.sinks.kinesis import KinesisSink

        return KinesisSink.open(agent, flow, metrics)
    if flow.delivery_stream is not None:
        from agent.sinks.firehose import FirehoseSink

        return FirehoseSink.open(agent, flow, metrics)
    raise AssertionError("config validation guarantees exactly one destination per flow")
