"""``kinesis-agent status`` and ``top``: argument parsing only; the views live in agent/observability/top.py."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.cli.options import config_or_path
from agent.config import DEFAULT_CONFIG, load_config


def register(subparsers: Any) -> None:
    where = argparse.ArgumentParser(add_help=False)
    config_or_path(
        where,
        "--socket",
        "the status socket itself",
        f"find the status socket from this agent.json (default {DEFAULT_CONFIG})",
        metavar="PATH",
    )

    status = subparsers.add_parser(
        "status",
        parents=[where],
        help="show the running agent: flows, files, rates, lag, errors",
    )
    status.add_argument("--json", action="store_true", help="print the raw JSON snapshot")
    status.set_defaults(func=cmd_status)

    top = subparsers.add_parser(
        "top", parents=[where], help="live view of the running agent (q or Ctrl+C to quit)"
    )
    top.add_argument(
        "--interval", type=float, default=1.0, help="seconds between redraws (default 1)"
    )
    top.set_defaults(func=cmd_top)


def _socket(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    # imported where used: registering these commands must not load asyncio and the status
    # server for every other command
    from agent.observability.status import socket_path

    return socket_path(load_config(args.config))


def cmd_status(args: argparse.Namespace) -> int:
    from agent.observability.status import fetch

    snap = fetch(_socket(args))
    if args.json:
        print(json.dumps(snap, indent=2, sort_keys=True))
        return 0
    from agent.observability.top import print_status

    print_status(snap)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from agent.observability.status import fetch
    from agent.observability.top import run_top

    path = _socket(args)
    return run_top(lambda: fetch(path), interval=max(0.2, args.interval))
