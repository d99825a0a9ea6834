"""Validation helpers: a raw JSON value coerced by its key's row, and the wording of the errors.

Numbers and booleans may be strings, as in the AWS agent; null means "not set". Every error names
its JSON path; an unknown key names the nearest valid one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from agent.config.schema import Key
from agent.errors import ConfigError

log = logging.getLogger("agent.config")  # the package's one logger, named as before the split

_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
_TRUE = {"true", "yes", "t", "y", "1"}
_FALSE = {"false", "no", "f", "n", "0"}


def read_keys(
    doc: Mapping[str, Any],
    table: Mapping[str, Key],
    elsewhere: Mapping[str, Key],
    move: str,
    *,
    prefix: str = "",
    source: str | None,
) -> dict[str, Any]:
    """The fields of ``doc``'s keys looked up in ``table``, coerced; ignored keys only warn.

    A key of ``elsewhere`` (the other level) is refused with ``move``; ``prefix`` is the JSON path
    of ``doc`` (``"flows[0]."``, or empty at the top level).
    """
    values: dict[str, Any] = {}
    for name, raw in doc.items():
        key = table.get(name)
        here = f"{prefix}{name}"
        if key is None:
            if name in elsewhere:
                raise ConfigError(here, move, source=source)
            raise ConfigError(here, f"unknown key{did_you_mean(name, table)}", source=source)
        value = coerce(key, raw, here, source)
        if key.ignored:
            log.warning("%s: accepted but %s", here, key.ignored)
            continue
        if value is not None:  # null means "not set" (the default), as in the AWS agent
            values[key.field] = value
    return values


def coerce(key: Key, raw: Any, path: str, source: str | None) -> Any:
    def bad(msg: str) -> ConfigError:
        return ConfigError(path, msg, source=source)

    if raw is None:
        if key.nullable or key.kind in {"str", "stream", "regex"}:
            return None
        raise bad(f"must be {_expect(key)}, not null")
    if key.kind == "int":
        value: Any
        if isinstance(raw, bool):
            raise bad(f"must be {_expect(key)}, not a boolean")
        if isinstance(raw, int):
            value = raw
        elif (isinstance(raw, float) and raw.is_integer()) or (
            isinstance(raw, str) and re.fullmatch(r"\s*[-+]?\d+\s*", raw)
        ):
            value = int(raw)
        else:
            raise bad(f"must be {_expect(key)}, not {raw!r}")
        if (key.lo is not None and value < key.lo) or (key.hi is not None and value > key.hi):
            if not key.clamp:
                raise bad(f"must be {_expect(key)}, got {value}")
            lo = value if key.lo is None else key.lo
            hi = value if key.hi is None else key.hi
            used = min(max(value, lo), hi)
            log.warning("%s: %d is outside %d to %d; using %d", path, value, lo, hi, used)
            return used
        return value
    if key.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        raise bad(f"must be a boolean (true/false), not {raw!r}")
    if key.kind in {"str", "stream", "regex", "enum"}:
        if not isinstance(raw, str):
            raise bad(f"must be a string, not {typename(raw)}")
        if key.kind == "stream" and not _STREAM_NAME.fullmatch(raw):
            raise bad(f"{raw!r} is not a valid stream name (1-128 of a-z A-Z 0-9 _ . -)")
        if key.kind == "enum" and raw not in key.choices:
            hint = did_you_mean(raw, dict.fromkeys(key.choices), cutoff=0.3)
            raise bad(
                f"must be one of {', '.join(key.choices)} (case-sensitive), not {raw!r}{hint}"
            )
        if key.kind == "regex":
            from agent.processors._base import compile_regex

            # the agent matches it against the file's bytes, where \u and \N{} do not exist
            try:
                compile_regex(raw.encode(), path)
            except ConfigError as exc:
                raise bad(f"{exc.message} (it is matched against bytes)") from None
        return raw
    if key.kind == "list":
        if not isinstance(raw, list):
            raise bad(f"must be a list, not {typename(raw)}")
        return tuple(raw)
    return raw


def _expect(key: Key) -> str:
    if key.kind == "int":
        if key.lo is not None and key.hi is not None:
            return f"an integer from {key.lo} to {key.hi}"
        return "an integer"
    return f"a {key.kind}"


def did_you_mean(name: str, valid: Mapping[str, Any], cutoff: float = 0.6) -> str:
    import difflib  # only when a key is unknown: not part of every start-up

    lowered = {k.lower(): k for k in valid}
    if name.lower() in lowered:
        return f"; did you mean {lowered[name.lower()]!r}? (keys are case-sensitive)"
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def typename(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), "a number")


def camel(field_name: str) -> str:
    head, *rest = field_name.split("_")
    return head + "".join(p.title() for p in rest)
