"""agent.json and agent.d/*.json from disk to plain JSON values: whatever a file holds, a value or a ConfigError.

The AWS agent's parser (Jackson) skips a UTF-8 byte-order mark, allows // and /* */ comments and
keeps the last value of a key given twice in one object; so do we, and we warn about the duplicate
with its JSON path. Whatever Python's ``json`` would turn into a crash or a surprise is refused
first, naming the file, line and column: nesting deeper than MAX_DEPTH (RecursionError), number
literals longer than MAX_NUMBER_CHARS (ValueError past 4,300 digits), numbers that overflow to
infinity (``1e999``), ``NaN``/``Infinity`` (not JSON; Jackson refuses them too), strings holding a
lone UTF-16 surrogate (they cannot be encoded again), files over MAX_FILE_BYTES, and anything that is
not a regular file (a FIFO would block the agent forever). The daemon re-reads these files on SIGHUP,
so a bad edit must never be able to take it down.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import stat
from collections import Counter
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, one_line

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# A real agent.json is a few KiB; a thousand flows fit in under 1 MiB.
MAX_FILE_BYTES = 4 * MIB
MAX_TOTAL_BYTES = 16 * MIB  # agent.json and every agent.d file together
MAX_EXTRA_FILES = 1000  # agent.d/*.json (one file per application is the usual layout)
# The deepest real configuration is about 6 levels (flows → flow → dataProcessingOptions → option →
# list); Python's json recurses once per level and dies near 1,000.
MAX_DEPTH = 64
# No value in a configuration needs more; Python refuses int() past 4,300 digits with ValueError.
MAX_NUMBER_CHARS = 100
MAX_DUPLICATE_WARNINGS = 10  # one line each; the rest are counted in one more line

_BOM = b"\xef\xbb\xbf"
# Strings (a missing closing quote runs to the end: json then reports it), comments (an unclosed
# /* runs to the end, as before), brackets, the number literals that can hurt (too long, or with
# an exponent: only those overflow to infinity) and NaN/Infinity. Nothing else needs a look
# before json.loads (the rest is json's to judge), and the regex engine skips it without a
# Python step per token.
_TOKEN = re.compile(
    rf"""
    (?P<string> "[^"\\]*(?:\\.[^"\\]*)*"? )
    | (?P<comment> //[^\n]* | /\*.*?(?:\*/|\Z) )
    | (?P<open> [\[{{] )
    | (?P<close> []}}] )
    | (?P<number> (?<![0-9.]) -?(?: [0-9.]{{{MAX_NUMBER_CHARS},}}[0-9.eE+-]* | [0-9][0-9.]*[eE][0-9eE+-]* ) )
    | (?P<word> (?<![A-Za-z0-9_])(?:NaN|Infinity)(?![A-Za-z0-9_]) )
    """,
    re.VERBOSE | re.DOTALL,
)
# a \uD800-\uDFFF escape: the only way a JSON text read as UTF-8 can produce a surrogate
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class ConfigBudget:
    """How many bytes the whole configuration may still read (agent.json plus agent.d)."""

    __slots__ = ("remaining",)

    def __init__(self, total: int | None = None) -> None:
        self.remaining = MAX_TOTAL_BYTES if total is None else total


def read_config_file(path: Path, budget: ConfigBudget | None = None) -> Any:
    """The JSON value in ``path``; duplicate keys are logged; anything wrong is a ConfigError."""
    budget = budget if budget is not None else ConfigBudget()
    data = _read_bytes(path, budget)
    return decode_config(data, str(path))


def extra_config_files(main_path: Path) -> list[Path]:
    """agent.d/*.json beside ``main_path`` in name order; an unreadable agent.d is an error."""
    extra_dir = main_path.parent / "agent.d"
    try:
        with os.scandir(extra_dir) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(".json"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        # listing nothing would silently drop every flow defined there
        raise ConfigError(
            "", f"cannot list the directory: {exc.strerror}", source=str(extra_dir)
        ) from None
    if len(names) > MAX_EXTRA_FILES:
        raise ConfigError(
            "",
            f"holds {len(names)} *.json files; at most {MAX_EXTRA_FILES} are read "
            "(merge flows into fewer files)",
            source=str(extra_dir),
        )
    return [extra_dir / name for name in names]


def _read_bytes(path: Path, budget: ConfigBudget) -> bytes:
    source = str(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError("", "configuration file not found", source=source) from None
    except OSError as exc:
        raise ConfigError("", f"cannot be read: {_reason(exc)}", source=source) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError("", "is a directory, not a configuration file", source=source)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("", "is not a regular file (a FIFO, socket or device)", source=source)
        limit = min(MAX_FILE_BYTES, budget.remaining)
        _check_size(st.st_size, limit, source)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # the file may grow while it is read: never more than limit + 1
            chunk = os.read(fd, min(MIB, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        _check_size(size, limit, source)
    except OSError as exc:
        raise ConfigError("", f"cannot be read: {_reason(exc)}", source=source) from None
    finally:
        os.close(fd)
    budget.remaining -= size
    return b"".join(chunks)


def _check_size(size: int, limit: int, source: str) -> None:
    if size <= limit:
        return
    if limit < MAX_FILE_BYTES:  # the budget, not the file's own cap, ran out
        raise ConfigError(
            "",
            f"takes the configuration over {MAX_TOTAL_BYTES // MIB} MiB in total "
            "(agent.json and agent.d together)",
            source=source,
        )
    raise ConfigError(
        "",
        f"is larger than the {MAX_FILE_BYTES // MIB} MiB a configuration file may hold",
        source=source,
    )


def _reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))


def decode_config(data: bytes, source: str) -> Any:
    """Bytes of one configuration file → its JSON value (see the module docstring for the rules)."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start, b"\n")
        raise ConfigError(
            "",
            f"is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} column {column}",
            source=source,
        ) from None
    text = _screen(text, source)
    if not text.strip():
        raise ConfigError("", "is empty; it must hold a JSON object with 'flows'", source=source)
    duplicates: dict[int, tuple[dict[str, Any], list[str]]] = {}

    def pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)  # the last value of a repeated key wins, as in the AWS agent
        if len(obj) != len(pairs):
            repeated = [k for k, n in Counter(k for k, _ in pairs).items() if n > 1]
            duplicates[id(obj)] = (obj, repeated)  # holding obj keeps its id unique
        return obj

    try:
        value = json.loads(text, object_pairs_hook=pairs_to_dict)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            "",
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            source=source,
        ) from None
    if duplicates or _SURROGATE_ESCAPE.search(text):
        _walk(value, duplicates, source)
    return value


def _screen(text: str, source: str) -> str:
    """Blank out comments (keeping every line and column) and refuse what json.loads cannot take."""
    pieces: list[str] = []
    last = 0
    depth = 0
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "string":
            continue
        token = match.group()
        if kind == "comment":
            pieces.append(text[last : match.start()])
            pieces.append(re.sub(r"[^\n]", " ", token))
            last = match.end()
        elif kind == "open":
            depth += 1
            if depth > MAX_DEPTH:
                raise _at(text, match.start(), f"nested deeper than {MAX_DEPTH} levels", source)
        elif kind == "close":
            depth = max(0, depth - 1)
        elif kind == "number":
            if len(token) > MAX_NUMBER_CHARS:
                raise _at(
                    text,
                    match.start(),
                    f"a number of {len(token):,} characters; at most {MAX_NUMBER_CHARS} are allowed",
                    source,
                )
            if any(c in token for c in ".eE"):
                try:
                    number = float(token)
                except ValueError:
                    continue  # not a JSON number: json.loads says where
                if math.isinf(number):
                    raise _at(text, match.start(), f"the number {token} is out of range", source)
        else:  # NaN, Infinity
            raise _at(text, match.start(), f"{token} is not JSON (numbers must be finite)", source)
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _at(text: str, offset: int, message: str, source: str) -> ConfigError:
    line, column = _position(text, offset, "\n")
    return ConfigError("", f"{message} (line {line} column {column})", source=source)


def _position(text: Any, offset: int, newline: Any) -> tuple[int, int]:
    line = text.count(newline, 0, offset) + 1
    column = offset - (text.rfind(newline, 0, offset) + 1) + 1
    return line, column


def _walk(value: Any, duplicates: dict[int, tuple[dict[str, Any], list[str]]], source: str) -> None:
    """Warn about repeated keys by their JSON paths; refuse strings with lone surrogates."""
    repeated: list[str] = []
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            repeated += [_join(path, key) for key in duplicates.get(id(node), (None, []))[1]]
            children = []
            for key, child in node.items():
                here = _join(path, key)
                if _SURROGATE.search(key):
                    raise ConfigError(
                        here,
                        "the key holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)",
                        source=source,
                    )
                children.append((child, here))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(child, f"{path}[{i}]") for i, child in enumerate(node)]))
        elif isinstance(node, str) and _SURROGATE.search(node):
            raise ConfigError(
                path, "holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)", source=source
            )
    for path in repeated[:MAX_DUPLICATE_WARNINGS]:
        log.warning(
            "%s: %s: given more than once in one object; the last value is used "
            "(as the AWS agent does)",
            one_line(source),
            one_line(path),
        )
    if len(repeated) > MAX_DUPLICATE_WARNINGS:  # a generated file must not flood the journal
        log.warning(
            "%s: %d more keys given more than once; the last value of each is used",
            one_line(source),
            len(repeated) - MAX_DUPLICATE_WARNINGS,
        )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
