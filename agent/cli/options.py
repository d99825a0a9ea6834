"""What every command shares, declared once: ``-c/--config``, the choice between it and a path
given directly (``--socket``, ``--store``), and how an error becomes one line and an exit status.
"""

from __future__ import annotations

import argparse
import sys

from agent.config import DEFAULT_CONFIG
from agent.errors import EX_CONFIG, ConfigError

PROG = "kinesis-agent"
CONFIG_HELP = f"agent.json (default {DEFAULT_CONFIG})"


def add_config(
    parser: argparse._ActionsContainer,
    help: str = CONFIG_HELP,
    *,
    default: str | None = DEFAULT_CONFIG,
) -> None:
    """``-c/--config`` on ``parser`` (a parser or a group); ``default=None`` where it is optional."""
    parser.add_argument("-c", "--config", default=default, help=help)


def config_or_path(
    parser: argparse._ActionsContainer,
    path: str,
    path_help: str,
    config_help: str,
    *,
    metavar: str | None = None,
    config_default: str | None = DEFAULT_CONFIG,
    path_first: bool = False,
) -> None:
    """``-c/--config`` or the ``path`` option (``--socket``, ``--store``), not both."""
    group = parser.add_mutually_exclusive_group()
    if path_first:
        group.add_argument(path, metavar=metavar, help=path_help)
    add_config(group, config_help, default=config_default)
    if not path_first:
        group.add_argument(path, metavar=metavar, help=path_help)


def report(exc: BaseException) -> int:
    """One line on stderr for an error the user can act on; the exit status: 78 for a
    configuration error (EX_CONFIG), else 1."""
    if isinstance(exc, ConfigError):
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    print(f"{PROG}: {exc}", file=sys.stderr)
    return 1
