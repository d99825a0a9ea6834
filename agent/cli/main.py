"""The ``kinesis-agent`` command: parsing and exit codes only; the work is done elsewhere."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence

from agent import __version__
from agent.cli.options import PROG, add_config, report
from agent.config import AgentConfig, load_config
from agent.errors import EX_CONFIG, AgentError, ConfigError

log = logging.getLogger("agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Ship log files into Kinesis Data Streams, Firehose, or the embedded stream store.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("KINESIS_AGENT_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent in the foreground")
    add_config(run)
    run.add_argument(
        "--once",
        action="store_true",
        help="ship every matched file up to its current end, wait for acknowledgements, exit",
    )
    run.set_defaults(func=cmd_run)

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

    from agent.cli import observe as commands_observe  # status, top

    commands_observe.register(sub)

    from agent.cli.stream import register as register_stream_commands

    register_stream_commands(sub)

    from agent.cli.serve import register as register_serve

    register_serve(sub)
    return parser


def configure_logging(level: str) -> None:
    try:
        from agent.service.systemd import configure_logging as systemd_logging
    except ImportError:
        logging.basicConfig(
            level=level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    else:
        systemd_logging(level)
    # botocore's DEBUG lines carry signed request headers: the access key id, the session token
    # (X-Amz-Security-Token) and more. The agent's own DEBUG never needs them.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))


def _load(path: str) -> AgentConfig:
    return load_config(path)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.service import daemon

    config = _load(args.config)
    return daemon.run(config, once=args.once, config_path=args.config)


def cmd_check(args: argparse.Namespace) -> int:
    from agent.printable import printable
    from agent.processors import build_chain
    from agent.tailing.discovery import scan, shipping_order
    from agent.tailing.framing import Framer

    config = _load(args.config)
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
    from agent.cli import check as check_more  # destinations and capacity advice

    return check_more.report(config, test_destination=args.test_destination)


def _first_agent_error(group: BaseExceptionGroup[BaseException]) -> AgentError | None:
    for exc in group.exceptions:
        if isinstance(exc, AgentError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            inner = _first_agent_error(exc)
            if inner is not None:
                return inner
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        result: int = args.func(args)
        return result
    except AgentError as exc:
        return report(exc)
    except ExceptionGroup as group:
        # a flow that cannot start (damaged state, unreachable store) fails the daemon's
        # TaskGroup: say what it was in one line, not with a traceback
        first = _first_agent_error(group)
        if first is None:
            raise
        print(f"{PROG}: {first}", file=sys.stderr)
        return EX_CONFIG if isinstance(first, ConfigError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
