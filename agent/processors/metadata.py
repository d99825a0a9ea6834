"""ADDMETADATA: wrap each line as ``{"ts": …, "metadata": <metadata>, "data": "<line>"}``.

``metadata`` is any JSON value, copied as-is. ``timestamp`` may be the string ``"true"`` (as the
AWS agent requires) or a JSON boolean (which crashes the AWS agent); ``ts`` is the UTC time the
record was processed, ``yyyy-MM-ddTHH:mm:ss.SSSZ``. ``data`` is the line without its line ending.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from agent.errors import ConfigError
from agent.processors._base import (
    Processor,
    check_keys,
    decode,
    get_bool,
    json_options,
    strip_eol,
)


def utc_millis_timestamp(now: float) -> str:
    """``2026-11-22T00:19:10.123Z`` for a Unix time."""
    seconds = int(now)
    millis = int((now - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class AddMetadata:
    """Pre-encodes the constant part once; per record only the time and the line are encoded."""

    __slots__ = ("_clock", "_metadata", "_opts", "_prefix", "_timestamp")

    def __init__(
        self, metadata: Any, *, timestamp: bool, opts: int, clock: Callable[[], float]
    ) -> None:
        self._metadata = metadata
        self._timestamp = timestamp
        self._opts = opts
        self._clock = clock
        # COMPACT output is assembled from bytes; PRETTYPRINT goes through a dict.
        self._prefix = (
            b'"metadata":' + orjson.dumps(metadata) + b',"data":'
            if not opts & orjson.OPT_INDENT_2
            else None
        )

    def __call__(self, data: bytes) -> bytes:
        text = strip_eol(decode(data))
        if self._prefix is None:
            obj: dict[str, Any] = {}
            if self._timestamp:
                obj["ts"] = utc_millis_timestamp(self._clock())
            obj["metadata"] = self._metadata
            obj["data"] = text
            return orjson.dumps(obj, option=self._opts) + b"\n"
        head = b"{"
        if self._timestamp:
            head = b'{"ts":"' + utc_millis_timestamp(self._clock()).encode() + b'",'
        return head + self._prefix + orjson.dumps(text) + b"}\n"


def add_metadata(
    options: Mapping[str, Any], path: str, *, clock: Callable[[], float] = time.time
) -> Processor:
    """ADDMETADATA factory: ``metadata`` (required), ``timestamp`` (false), ``jsonFormat``."""
    check_keys(options, ("metadata", "timestamp", "jsonFormat"), path)
    if "metadata" not in options:
        raise ConfigError(f"{path}.metadata", 'is required (any JSON value, e.g. {"env": "prod"})')
    metadata = options["metadata"]
    try:
        orjson.dumps(metadata)
    except TypeError as exc:
        raise ConfigError(f"{path}.metadata", f"cannot be encoded as JSON: {exc}") from None
    return AddMetadata(
        metadata,
        timestamp=get_bool(options, "timestamp", False, path),
        opts=json_options(options, path),
        clock=clock,
    )
