"""dataProcessingOptions → a chain of processors; a processor is ``Callable[[bytes], bytes | None]``.

Each processor is built once from its options (regexes compiled, field lists resolved) so the
per-record call is cheap. ``None`` means "skip this record" (acknowledged at once and counted). A
processor that raises makes the chain send the raw record and count it, as the AWS agent does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.errors import ConfigError

Processor = Callable[[bytes], "bytes | None"]
Factory = Callable[[Mapping[str, Any], str], Processor]


class Chain:
    """Runs the processors in order; counts skipped records and processing errors."""

    __slots__ = ("errors", "processors", "skipped")

    def __init__(self, processors: Sequence[Processor]) -> None:
        self.processors = tuple(processors)
        self.skipped = 0
        self.errors = 0

    def __bool__(self) -> bool:
        return bool(self.processors)

    def __call__(self, data: bytes) -> bytes | None:
        out = data
        try:
            for process in self.processors:
                result = process(out)
                if result is None:
                    self.skipped += 1
                    return None
                out = result
        except Exception:
            self.errors += 1
            return data
        return out


def _options_path(path: str, name: str) -> str:
    return f"{path}.{name}"


_CONTROL_AND_SPACE = bytes(range(33))


def single_line(options: Mapping[str, Any], path: str) -> Processor:
    """SINGLELINE: join the lines of a record, trimming each unless NO_TRIM."""
    parse_options = options.get("parseOptions", [])
    if not isinstance(parse_options, list) or not all(isinstance(o, str) for o in parse_options):
        raise ConfigError(
            _options_path(path, "parseOptions"), "must be a list of NO_TRIM / ESCAPE_NEW_LINE"
        )
    unknown = set(parse_options) - {"NO_TRIM", "ESCAPE_NEW_LINE"}
    if unknown:
        raise ConfigError(
            _options_path(path, "parseOptions"),
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


PROCESSORS: dict[str, Factory] = {
    "SINGLELINE": single_line,
}

_KNOWN_ELSEWHERE = (
    "ADDMETADATA",
    "ADDEC2METADATA",
    "CSVTOJSON",
    "LOGTOJSON",
    "ADDBRACKETS",
    "USINGPLUGGIN",
)


def build_chain(
    options: Sequence[Mapping[str, Any]], *, path: str = "dataProcessingOptions"
) -> Chain:
    """Build the chain for a flow's ``dataProcessingOptions``; bad options raise ConfigError."""
    processors: list[Processor] = []
    for i, option in enumerate(options):
        here = f"{path}[{i}]"
        name = option.get("optionName")
        if not isinstance(name, str):
            raise ConfigError(f"{here}.optionName", "is required (e.g. SINGLELINE, LOGTOJSON)")
        factory = PROCESSORS.get(name)
        if factory is None:
            if name in _KNOWN_ELSEWHERE:
                raise ConfigError(f"{here}.optionName", f"{name} is not supported by this version")
            valid = ", ".join(sorted(PROCESSORS))
            raise ConfigError(
                f"{here}.optionName",
                f"unknown processor {name!r}; valid are {valid} (case-sensitive)",
            )
        processors.append(factory(option, here))
    return Chain(processors)
