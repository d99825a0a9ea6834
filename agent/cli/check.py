"""The parts of ``kinesis-agent check`` that look past the files: destinations and capacity.

``--test-destination`` asks each destination whether it exists and whether these credentials can
describe it (DescribeStreamSummary, DescribeDeliveryStream, or the embedded store's catalogue).
Capacity advice needs observed rates, so it comes from the running agent's status socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.config import AgentConfig, FlowConfig
from agent.observability.status import StatusUnavailable, fetch, socket_path
from agent.printable import printable

Describe = Callable[[AgentConfig, FlowConfig], str]


def _aws_client(config: AgentConfig, service: str) -> Any:
    from agent.sinks.aws import make_client

    return make_client(config, service)


def describe_kinesis(config: AgentConfig, flow: FlowConfig) -> str:
    client = _aws_client(config, "kinesis")
    s = client.describe_stream_summary(StreamName=flow.stream_name)["StreamDescriptionSummary"]
    return f"{s['StreamStatus']}, {s['OpenShardCount']} open shard(s)"


def describe_firehose(config: AgentConfig, flow: FlowConfig) -> str:
    client = _aws_client(config, "firehose")
    d = client.describe_delivery_stream(DeliveryStreamName=flow.stream_name)
    return str(d["DeliveryStreamDescription"]["DeliveryStreamStatus"])


def describe_local(config: AgentConfig, flow: FlowConfig) -> str:
    from agent.store.store import StreamStore

    try:
        store = StreamStore.open(config.local_store_directory, create=False, read_only=True)
    except Exception:
        return (
            f"no store in {config.local_store_directory} yet; the agent creates it and the "
            f"stream ({config.local_store_shard_count} shards) on its first run"
        )
    with store:
        if flow.stream_name not in store.list_streams():
            return f"not created yet; the agent creates it with {config.local_store_shard_count} shards"
        info = store.describe(flow.stream_name)
        return f"exists, {info.shard_count} shard(s), retention {info.retention_hours} h"


DESCRIBERS: dict[str, Describe] = {
    "kinesis": describe_kinesis,
    "firehose": describe_firehose,
    "local": describe_local,
}


def test_destinations(
    config: AgentConfig, describers: dict[str, Describe] | None = None
) -> tuple[bool, list[str]]:
    """One line per flow; False when any destination cannot be described."""
    describers = describers or DESCRIBERS
    ok, lines = True, []
    for flow in config.flows:
        try:
            lines.append(
                f"  {flow.destination}: OK ({describers[flow.destination_kind](config, flow)})"
            )
        except Exception as exc:
            ok = False
            lines.append(f"  {flow.destination}: FAILED: {_one_line(exc)}")
    return ok, lines


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return printable(text.splitlines()[0])


def capacity_lines(config: AgentConfig) -> list[str]:
    """Advice for each Kinesis flow from the running agent's rates, or why there is none."""
    kinesis = [f for f in config.flows if f.destination_kind == "kinesis"]
    if not kinesis:
        return []
    try:
        snap = fetch(socket_path(config), timeout=2.0)
    except StatusUnavailable as exc:
        return [f"  no observed rates ({printable(str(exc))})"]
    from agent.observability.top import capacity_lines as from_snapshot

    lines = from_snapshot(snap)
    return [f"  {printable(line)}" for line in lines] or ["  no Kinesis flow has sent anything yet"]


def report(config: AgentConfig, *, test_destination: bool) -> int:
    """Print the state directories' and destinations' checks and capacity advice; the exit status
    of ``check``."""
    from agent.errors import AgentError
    from agent.service.instance import check_state_directories

    status = 0
    try:
        check_state_directories(config)
    except AgentError as exc:
        print(f"\nstate: {exc}")
        status = 1  # run would exit 1 on it
    if test_destination:
        print("\ndestinations:")
        ok, lines = test_destinations(config)
        print("\n".join(lines))
        status = status if ok else 1
    caps = capacity_lines(config)
    if caps:
        print("\ncapacity (Kinesis, from the running agent's busiest second of the last minute):")
        print("\n".join(caps))
    return status
