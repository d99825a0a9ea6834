"""LOGTOJSON: parse a log line with a known format (or ``matchPattern``) into a JSON object.

Options: ``logFormat`` (required), ``matchPattern`` + ``customFieldNames`` (a pattern of your own;
its named groups may stand in for the names), ``customFieldNames`` alone (rename the format's
fields), ``jsonFormat``, and ours: ``onMismatch`` = ``SKIP`` (default, as AWS: skipped and
counted) or ``RAW`` (the line is sent unparsed and counted). Every value is a string or null.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from agent.errors import ConfigError
from agent.processors._base import (
    PassRaw,
    Processor,
    RateLimitedWarning,
    check_keys,
    compile_regex,
    get_names,
    get_str,
    json_options,
)
from agent.processors.logformats import (
    RFC5424,
    RFC5424_EXTRA_FIELDS,
    builtin_formats,
    can_name_groups,
    compile_named,
    error_log_values,
    rfc5424_values,
    translate_java_regex,
)

log = logging.getLogger(__name__)

Builder = Callable[["re.Match[str]"], dict[str, Any]]
_SAMPLE_CHARS = 200


class Mismatch:
    """What happens to a line the pattern does not match: skipped, or sent raw; warned rarely."""

    __slots__ = ("_action", "_fmt", "_path", "_raw", "_warn", "count")

    def __init__(self, *, raw: bool, fmt: str, path: str, warn: RateLimitedWarning) -> None:
        self._raw = raw
        self._fmt = fmt
        self._path = path
        self._warn = warn
        self._action = "sent raw" if raw else "skipped"
        self.count = 0

    def __call__(self, text: str) -> None:
        self.count += 1
        self._warn(
            "%s: a record does not match %s and was %s: %r",
            self._path,
            self._fmt,
            self._action,
            text[:_SAMPLE_CHARS].rstrip("\r\n"),
        )
        if self._raw:
            raise PassRaw(f"does not match {self._fmt}", unmatched=True)


def make_log_to_json(
    pattern: re.Pattern[str],
    build: Builder,
    *,
    fast: re.Pattern[str] | None,
    opts: int,
    mismatch: Mismatch,
    fallback: tuple[re.Pattern[str], Builder] | None = None,
    eol_in_pattern: bool = False,
) -> Processor:
    """The per-record function; a closure because this is the hot path (cheaper than a method).

    ``fast`` is an equivalent pattern for lines without a backslash (no ``\\"`` escapes).
    ``eol_in_pattern``: the patterns end in ``\\r?\\n?`` outside every group, so the line
    ending need not be cut off first.
    """
    exact = pattern.fullmatch
    quick = fast.fullmatch if fast is not None else exact
    dumps = orjson.dumps
    other, other_build = fallback if fallback is not None else (None, build)

    def process(data: bytes) -> bytes | None:
        text = data.decode("utf-8", "replace")  # see _base.decode: U+FFFD keeps JSON valid
        if text[-1:] == "\n":
            text = text[:-2] if text[-2:-1] == "\r" else text[:-1]
        match = quick(text) if "\\" not in text else exact(text)
        if match is None:
            if other is not None and (match := other.fullmatch(text)) is not None:
                return dumps(other_build(match), option=opts) + b"\n"
            mismatch(text)
            return None
        return dumps(build(match), option=opts) + b"\n"

    def process_whole(data: bytes) -> bytes | None:
        text = data.decode("utf-8", "replace")
        match = quick(text) if "\\" not in text else exact(text)
        if match is None:
            mismatch(text)
            return None
        return dumps(build(match), option=opts) + b"\n"

    if eol_in_pattern and fallback is None:
        process = process_whole
    process.mismatch = mismatch  # type: ignore[attr-defined]  # for tests and introspection
    return process


def _zip_builder(names: tuple[str, ...]) -> Builder:
    def build(match: re.Match[str]) -> dict[str, Any]:
        return dict(zip(names, match.groups(), strict=False))  # lengths checked at build

    return build


def _dash_builder(names: tuple[str, ...]) -> Builder:
    def build(match: re.Match[str]) -> dict[str, Any]:
        return {
            name: None if value == "-" else value
            for name, value in zip(names, match.groups(), strict=True)
        }

    return build


def _error_log_builder(names: tuple[str, ...]) -> Builder:
    def build(match: re.Match[str]) -> dict[str, Any]:
        return dict(zip(names, error_log_values(match.groups()), strict=True))

    return build


def _rfc5424_builder(names: tuple[str, ...]) -> Builder:
    keys = (*names, *RFC5424_EXTRA_FIELDS)

    def build(match: re.Match[str]) -> dict[str, Any]:
        return dict(zip(keys, rfc5424_values(match.groups()), strict=True))

    return build


def _custom_pattern(
    source: str, names: tuple[str, ...] | None, path: str
) -> tuple[re.Pattern[str], tuple[str, ...]]:
    pattern = compile_regex(translate_java_regex(source), f"{path}.matchPattern")
    if names is None:
        named = tuple(pattern.groupindex)
        if not named or len(named) != pattern.groups:
            raise ConfigError(
                f"{path}.customFieldNames",
                "is required with matchPattern (one name per group), unless every group is named",
            )
        return pattern, named
    if pattern.groups != len(names):
        raise ConfigError(
            f"{path}.customFieldNames",
            f"has {len(names)} names but matchPattern has {pattern.groups} groups; "
            "they must be equal (use (?:…) for groups that are not fields)",
        )
    return pattern, names


def log_to_json(options: Mapping[str, Any], path: str) -> Processor:
    """LOGTOJSON factory."""
    check_keys(
        options, ("logFormat", "matchPattern", "customFieldNames", "jsonFormat", "onMismatch"), path
    )
    formats = builtin_formats()
    fmt_name = get_str(options, "logFormat", path)
    fmt = formats.get(fmt_name)
    if fmt is None:
        valid = ", ".join(formats)
        raise ConfigError(
            f"{path}.logFormat", f"unknown log format {fmt_name!r}; valid are {valid}"
        )
    on_mismatch = get_str(options, "onMismatch", path, default="SKIP")
    if on_mismatch not in ("SKIP", "RAW"):
        raise ConfigError(f"{path}.onMismatch", f"must be SKIP or RAW, not {on_mismatch!r}")
    names = get_names(options, "customFieldNames", path)

    build: Builder
    fast: re.Pattern[str] | None = None
    fallback: tuple[re.Pattern[str], Builder] | None = None
    if "matchPattern" in options:
        pattern, names = _custom_pattern(get_str(options, "matchPattern", path), names, path)
        build = _dash_builder(names) if fmt.apache else _zip_builder(names)
    else:
        if names is not None and len(names) != len(fmt.fields):
            raise ConfigError(
                f"{path}.customFieldNames",
                f"{fmt.name} has {len(fmt.fields)} fields ({', '.join(fmt.fields)}); "
                f"give exactly that many names, not {len(names)}",
            )
        names = names or fmt.fields
        if fmt.name == "APACHEERRORLOG":
            pattern, fast = fmt.compile(), None
            build = _error_log_builder(names)
        elif can_name_groups(names):
            # The access patterns capture nothing for an Apache "-": no per-field check is needed.
            pattern, fast = fmt.compile(names), fmt.compile_fast(names)
            build = re.Match.groupdict  # a C method: no Python frame per record
        else:
            pattern, fast = fmt.compile(), fmt.compile_fast()
            build = _zip_builder(names)
        if fmt.name == "RFC3339SYSLOG":
            # Lines in the RFC 5424 layout carry two more fields; they keep their default names.
            fallback = (compile_named(RFC5424, None), _rfc5424_builder(names))
    mismatch = Mismatch(
        raw=on_mismatch == "RAW",
        fmt=fmt.name if "matchPattern" not in options else f"{path}.matchPattern",
        path=path,
        warn=RateLimitedWarning(log),
    )
    return make_log_to_json(
        pattern,
        build,
        fast=fast,
        opts=json_options(options, path),
        mismatch=mismatch,
        fallback=fallback,
        eol_in_pattern=fmt.eol_in_pattern and "matchPattern" not in options,
    )
