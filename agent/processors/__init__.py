"""dataProcessingOptions → a chain of processors; a processor is ``Callable[[bytes], bytes | None]``.

Each processor is built once from its options (regexes compiled, field lists resolved) so the
per-record call is cheap. A record's bytes include its trailing newline; every output ends with
exactly one. ``None`` means "skip this record" (acknowledged at once and counted). A processor that
raises makes the chain send the raw record and count it, as the AWS agent does; ``PassRaw`` is the
deliberate form of that (e.g. LOGTOJSON with ``onMismatch: RAW``).

Families: text.py (SINGLELINE, ADDBRACKETS), csvjson.py (CSVTOJSON), logjson.py + logformats.py
(LOGTOJSON), metadata.py (ADDMETADATA), ec2.py (ADDEC2METADATA).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from agent.errors import ConfigError
from agent.processors._base import Factory, PassRaw, Processor, RateLimitedWarning

__all__ = ["PROCESSORS", "Chain", "Factory", "PassRaw", "Processor", "build_chain", "factory"]

log = logging.getLogger(__name__)


class Chain:
    """Runs the processors in order; counts skipped records and records sent raw.

    ``errors`` counts every record sent raw because processing failed (a processor raised, or
    asked for it with PassRaw); ``unmatched`` is the part of those that a LOGTOJSON format did
    not match (``onMismatch: RAW``). Warnings about both are rate-limited.
    """

    __slots__ = ("_names", "_warn", "errors", "processors", "skipped", "unmatched")

    def __init__(
        self, processors: Sequence[Processor], *, names: Sequence[str] | None = None
    ) -> None:
        self.processors = tuple(processors)
        self._names = (
            tuple(names)
            if names is not None
            else tuple(f"dataProcessingOptions[{i}]" for i in range(len(self.processors)))
        )
        self.skipped = 0
        self.errors = 0
        self.unmatched = 0
        self._warn = RateLimitedWarning(log)

    def __bool__(self) -> bool:
        return bool(self.processors)

    def __call__(self, data: bytes) -> bytes | None:
        out: bytes | None = data
        process = None
        try:
            for process in self.processors:
                out = process(out)  # type: ignore[arg-type]  # None returns before the next step
                if out is None:
                    self.skipped += 1
                    return None
        except PassRaw as signal:
            self.errors += 1
            if signal.unmatched:
                self.unmatched += 1
            else:
                self._warn("%s: %s; sending the record raw", self._name(process), signal)
            return data
        except Exception as exc:
            self.errors += 1
            self._warn(
                "%s failed (%s: %s); sending the record raw",
                self._name(process),
                type(exc).__name__,
                exc,
            )
            return data
        return out

    def process_many(self, datas: Sequence[bytes]) -> list[bytes | None]:
        """The chain over many records, in order (a worker process's whole chunk)."""
        return list(map(self, datas))

    def _name(self, process: Processor | None) -> str:
        for name, candidate in zip(self._names, self.processors, strict=True):
            if candidate is process:
                return name
        return "a processor"


# Every optionName, and the module and factory of its family: a family's module is imported when
# a chain uses it (factory), since the families and orjson were ~5 ms of every start-up, which a
# flow without processing never needs.
PROCESSORS: dict[str, tuple[str, str]] = {
    "SINGLELINE": ("text", "single_line"),
    "ADDBRACKETS": ("text", "add_brackets"),
    "CSVTOJSON": ("csvjson", "csv_to_json"),
    "LOGTOJSON": ("logjson", "log_to_json"),
    "ADDMETADATA": ("metadata", "add_metadata"),
    "ADDEC2METADATA": ("ec2", "add_ec2_metadata"),
}


def factory(name: str) -> Factory | None:
    """The factory of the processor called ``name`` (its module imported now), None if unknown."""
    import importlib

    where = PROCESSORS.get(name)
    if where is None:
        return None
    module, attr = where
    made: Factory = getattr(importlib.import_module(f"agent.processors.{module}"), attr)
    return made


_NOT_SUPPORTED = {
    "USINGPLUGGIN": "it loads Java classes; there is no Python equivalent",
}


def build_chain(
    options: Sequence[Mapping[str, Any]], *, path: str = "dataProcessingOptions"
) -> Chain:
    """Build the chain for a flow's ``dataProcessingOptions``; bad options raise ConfigError."""
    processors: list[Processor] = []
    names: list[str] = []
    for i, option in enumerate(options):
        here = f"{path}[{i}]"
        name = option.get("optionName")
        if not isinstance(name, str):
            raise ConfigError(f"{here}.optionName", "is required (e.g. SINGLELINE, LOGTOJSON)")
        make = factory(name)
        if make is None:
            if name in _NOT_SUPPORTED:
                raise ConfigError(
                    f"{here}.optionName", f"{name} is not supported: {_NOT_SUPPORTED[name]}"
                )
            valid = ", ".join(sorted(PROCESSORS))
            raise ConfigError(
                f"{here}.optionName",
                f"unknown processor {name!r}; valid are {valid} (case-sensitive)",
            )
        processors.append(make(option, here))
        names.append(f"{here} ({name})")
    return Chain(processors, names=names)
