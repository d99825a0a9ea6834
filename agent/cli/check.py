"""``kinesis-agent check``: the configuration, the files it matches, their first records after
processing, and (past the files) the destinations and capacity.

``--test-destination`` asks each destination whether it exists and whether these credentials can
describe it (DescribeStreamSummary, DescribeDeliveryStream, or the embedded store's catalogue).
Capacity advice needs observed rates, so it comes from the running agent's status socket.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from agent.cli.options import add_config
from agent.config import AgentConfig, FlowConfig, load_config
from agent.printable import printable

Describe = Callable[[AgentConfig, FlowConfig], str]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "check", help="validate the configuration and show what would be shipped"
    )
    add_config(check)
    check.add_argument(
        "--samples", type=int, default=3, help="records to show per flow (default 3)"
    )
    check.add_argument(
        "--test-destination",
        action="store_true",
        help="also check that each stream / delivery stream exists and the credentials can describe it",
    )
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from agent.processors import build_chain
    from agent.tailing.discovery import scan, shipping_order
    from agent.tailing.framing import Framer

    config = load_config(args.config)
    print(f"configuration OK: {', '.join(config.sources)} ({len(config.flows)} flow(s))")
    for flow in config.flows:
        print(f"\nflow {flow.flow_id} -> {flow.destination}")
        files = sorted(scan(flow.file_pattern), key=lambda f: shipping_order(f.mtime, f.path))
        if not files:
            print(f"  no files match {flow.file_pattern} yet")
            continue
        for f in files:
            print(f"  {printable(f.path)}  {f.size} bytes")  # names and records: never raw
        chain = build_chain(flow.data_processing_options)
        pattern = flow.multi_line_start_pattern
        framer = Framer(
            multiline=re.compile(pattern.encode()) if pattern else None,
            skip_header_lines=flow.skip_header_lines,
            terminator=flow.truncated_record_terminator.encode(),
        )
        newest = files[-1]
        try:
            with open(newest.path, "rb") as fh:
                framed = framer.feed(fh.read(256 * 1024), 0)
        except OSError as exc:
            print(f"  cannot read {printable(newest.path)}: {exc.strerror}")
            continue
        print(f"  first records of {printable(newest.path)} after processing:")
        shown = 0
        for data, _start, _end in framed:
            out = chain(data)
            if out is None:
                continue
            text = out.decode("utf-8", "replace").rstrip("\n")
            print("    " + printable(text, keep_layout=True))
            shown += 1
            if shown >= args.samples:
                break
        if not shown:
            print("    (no complete record yet)")
    return report(config, test_destination=args.test_destination)


def _aws_client(config: AgentConfig, service: str) -> Any:
    from agent.awsclient import make_client

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
    from agent.observability.status import StatusUnavailable, fetch, socket_path

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
