"""Processors that reshape the raw text of a record without parsing it: SINGLELINE, ADDBRACKETS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.errors import ConfigError
from agent.processors._base import Processor, check_keys

_CONTROL_AND_SPACE = bytes(range(33))


def single_line(options: Mapping[str, Any], path: str) -> Processor:
    """SINGLELINE: join the lines of a record, trimming each unless NO_TRIM."""
    check_keys(options, ("parseOptions",), path)
    parse_options = options.get("parseOptions", [])
    if not isinstance(parse_options, list) or not all(isinstance(o, str) for o in parse_options):
        raise ConfigError(f"{path}.parseOptions", "must be a list of NO_TRIM / ESCAPE_NEW_LINE")
    unknown = set(parse_options) - {"NO_TRIM", "ESCAPE_NEW_LINE"}
    if unknown:
        raise ConfigError(
            f"{path}.parseOptions",
            f"unknown option {sorted(unknown)[0]!r}; valid are NO_TRIM and ESCAPE_NEW_LINE",
        )
    trim = "NO_TRIM" not in parse_options
    # One backslash and an 'n': the AWS agent writes two backslashes, which nobody wants (its B4).
    joiner = b"\\n" if "ESCAPE_NEW_LINE" in parse_options else b""

    def process(data: bytes) -> bytes:
        lines = data.split(b"\n")
        while lines and not lines[-1]:
            lines.pop()
        if trim:
            lines = [line.strip(_CONTROL_AND_SPACE) for line in lines]
        return joiner.join(lines) + b"\n"

    return process


def add_brackets(options: Mapping[str, Any], path: str) -> Processor:
    """ADDBRACKETS: ``line`` → ``{line}``.

    AWS puts the record's newline inside the braces; we keep it outside, so the output is still
    one line ending in exactly one newline like every other processor's.
    """
    check_keys(options, (), path)

    def process(data: bytes) -> bytes:
        if data.endswith(b"\n"):
            data = data[:-1]
            if data.endswith(b"\r"):
                data = data[:-1]
        return b"{" + data + b"}\n"

    return process
