"""What every processor shares: option checking, JSON output flags, text decoding, quiet warnings.

Options are read and checked once, when the processor is built, so that the per-record call does
no look-ups. Every option error is a ConfigError naming the JSON path of the offending key.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, AnyStr

from agent.errors import ConfigError

Processor = Callable[[bytes], "bytes | None"]
Factory = Callable[[Mapping[str, Any], str], Processor]

WARNING_INTERVAL_SECONDS = 60.0

log = logging.getLogger(__name__)


class PassRaw(Exception):
    """Raised by a processor that cannot process a record: the chain sends the raw record, counted.

    ``unmatched`` marks a record that did not match a LOGTOJSON format (``onMismatch: RAW``), so
    the chain can count those apart from other processing failures.
    """

    def __init__(self, reason: str, *, unmatched: bool = False) -> None:
        super().__init__(reason)
        self.unmatched = unmatched


class RateLimitedWarning:
    """Logs a warning at most once per interval and says how many were held back meanwhile.

    The AWS agent logs one WARN per skipped record; on a busy host that floods the journal.
    """

    __slots__ = ("_clock", "_interval", "_logger", "_next", "_suppressed")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = WARNING_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._suppressed = 0

    def __call__(self, message: str, *args: object) -> None:
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d similar warnings suppressed in the last %.0f s)"
            args = (*args, self._suppressed, self._interval)
        self._suppressed = 0
        self._next = now + self._interval
        self._logger.warning(message, *args)


def decode(data: bytes) -> str:
    """Bytes of a log line → text. Invalid UTF-8 becomes U+FFFD so the JSON we emit stays valid.

    ``surrogateescape`` would keep the original bytes but JSON cannot carry lone surrogates
    (orjson rejects them), so a single bad byte would turn the whole record raw.
    """
    return data.decode("utf-8", "replace")


def strip_eol(text: str) -> str:
    """Drop one trailing ``\\n`` and a ``\\r`` before it (framing keeps both, as AWS does)."""
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text


def compile_regex(
    source: AnyStr, path: str, *, invalid: str = "is not a valid regular expression"
) -> re.Pattern[AnyStr]:
    """Compile a regex from the configuration; any way it can fail is a ConfigError naming ``path``.

    Besides ``re.error``, a hostile pattern raises OverflowError (``a{99999999999}``) or
    RecursionError (thousands of nested groups); Python's own FutureWarnings about a pattern
    (``[[``) become one log line instead of a multi-line warning on stderr.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pattern = re.compile(source)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ConfigError(path, f"{invalid}: {exc}") from None
    for warning in caught:
        log.warning("%s: %s", path, warning.message)
    return pattern


def check_keys(options: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
    """Reject a key the processor does not know, naming the nearest valid one (typos are common)."""
    valid = {"optionName", *allowed}
    for key in options:
        if key not in valid:
            import difflib  # only for the error message

            near = difflib.get_close_matches(str(key), sorted(valid), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            name = options.get("optionName")
            raise ConfigError(f"{path}.{key}", f"unknown key for {name}{hint}")


def json_options(options: Mapping[str, Any], path: str) -> int:
    """``jsonFormat`` COMPACT (default) or PRETTYPRINT → orjson flags, without the newline.

    Processors append the newline themselves, ``dumps(obj, option=opts) + b"\n"``: orjson builds
    its output in a buffer of its own that it shrinks to size, and keeping thousands of those
    alive (records in flight) cost a fresh page, so a page fault, per record (~1.7 us of a
    ~4 us LOGTOJSON line). The concatenation copies the record into Python's small-object
    allocator and lets orjson's buffer be reused at once.
    """
    fmt = options.get("jsonFormat", "COMPACT")
    if fmt == "COMPACT":
        return 0
    if fmt == "PRETTYPRINT":
        import orjson  # loaded with the processors that write JSON; not at the agent's start-up

        return orjson.OPT_INDENT_2
    raise ConfigError(f"{path}.jsonFormat", f"must be COMPACT or PRETTYPRINT, not {fmt!r}")


def get_bool(options: Mapping[str, Any], key: str, default: bool, path: str) -> bool:
    """A boolean option, also written as the string "true"/"false" (AWS configs use strings)."""
    value = options.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{path}.{key}", f'must be true or false (or "true"/"false"), not {value!r}')


def get_number(
    options: Mapping[str, Any], key: str, default: float, path: str, *, minimum: float = 0
) -> float:
    """A number option, also written as a string (as AWS configs often do)."""
    value = options.get(key, default)
    if isinstance(value, bool):
        value = None
    elif isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            value = None
    if not isinstance(value, int | float) or value != value or value < minimum:
        raise ConfigError(f"{path}.{key}", f"must be a number ≥ {minimum:g}")
    return float(value)


def get_str(options: Mapping[str, Any], key: str, path: str, *, default: str | None = None) -> str:
    """A required (or defaulted) string option."""
    value = options.get(key, default)
    if value is None:
        raise ConfigError(f"{path}.{key}", "is required")
    if not isinstance(value, str):
        raise ConfigError(f"{path}.{key}", f"must be a string, not {type(value).__name__}")
    return value


def get_names(options: Mapping[str, Any], key: str, path: str) -> tuple[str, ...] | None:
    """``customFieldNames``: a non-empty list of distinct strings, or None when absent."""
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}.{key}", "must be a non-empty list of strings")
    seen: set[str] = set()
    for i, name in enumerate(value):
        if name in seen:
            raise ConfigError(f"{path}.{key}[{i}]", f"duplicate field name {name!r}")
        seen.add(name)
    return tuple(value)
