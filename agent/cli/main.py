"""The ``kinesis-agent`` command: parsing and exit codes only; the work is done elsewhere."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from agent.cli import check, observe, serve, stream
from agent.cli.options import PROG, add_config, report
from agent.config import load_config
from agent.errors import EX_CONFIG, AgentError, ConfigError

log = logging.getLogger("agent")


class _Version(argparse._VersionAction):
    """``--version``, the version looked up only when asked (``agent.__version__`` reads the
    package metadata: importlib.metadata, a fifth of a local flow's start-up)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        from agent import __version__

        self.version = f"{PROG} {__version__}"
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Ship log files into Kinesis Data Streams, Firehose, or the embedded stream store.",
    )
    parser.add_argument("--version", action=_Version)
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

    # the other commands, in the order --help lists them, each from its own module; registering
    # one imports nothing its work needs (the store, the endpoint, rich, botocore): those load
    # when it runs, so `run` starts without them (tests/service/test_startup_imports.py)
    for command in (check, observe, stream, serve):
        command.register(sub)
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


def cmd_run(args: argparse.Namespace) -> int:
    from agent.service import daemon

    config = load_config(args.config)
    return daemon.run(config, once=args.once, config_path=args.config)


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
